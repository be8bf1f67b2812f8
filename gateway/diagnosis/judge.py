"""From measures to per-kind scores (1.0 = at the threshold) and states with hysteresis.

Scores adapt to the picture's mode: a grey (IR, night) picture uses the night
thresholds for darkness and noise, is never a colour cast, and is compared with the
night reference. One fault explains others (a lost signal is also flat, dark and
frozen; a covered lens is also blurred and "moved"), so a kind that fires suppresses
the kinds it explains, in the order of :data:`KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import DiagnosisThresholds
from gateway.diagnosis.measure import Measures, Reference

KINDS = (
    "signal_loss",
    "too_bright",
    "occlusion",
    "too_dark",
    "frozen",
    "scene_change",
    "blur",
    "colour_cast",
    "noise",
)
_EXPLAINS: dict[str, frozenset[str]] = {
    "signal_loss": frozenset(KINDS) - {"signal_loss"},
    "too_bright": frozenset({"occlusion", "blur", "scene_change", "colour_cast", "noise"}),
    "occlusion": frozenset({"too_dark", "blur", "scene_change", "colour_cast", "noise"}),
    "too_dark": frozenset({"blur", "scene_change", "colour_cast", "noise"}),
    "frozen": frozenset({"noise"}),
    "scene_change": frozenset({"blur", "colour_cast"}),
}
LAYOUT_KEPT = 0.9  # a dark or soft picture keeping the reference's layout is not covered
NAMES = {
    "signal_loss": ("信号丢失", "signal loss"),
    "too_bright": ("过亮", "too bright"),
    "occlusion": ("遮挡", "occlusion"),
    "too_dark": ("过暗", "too dark"),
    "frozen": ("画面冻结", "frozen picture"),
    "scene_change": ("场景变更", "scene change"),
    "blur": ("模糊", "blur"),
    "colour_cast": ("偏色", "colour cast"),
    "noise": ("噪声", "noise"),
}


def scores(m: Measures, t: DiagnosisThresholds, ref: Reference | None) -> dict[str, float]:
    """Raw score per kind for one sample, before suppression."""
    dark = t.dark_luma_night if m.night else t.dark_luma
    noise = t.noise_sigma_night if m.night else t.noise_sigma
    out = {
        # flat white is glare (too bright), not a lost signal
        "signal_loss": m.dominant / t.flat_fraction if m.dominant_level < 240 else 0.0,
        "too_bright": max(m.mean / t.bright_luma, m.saturated / t.bright_saturated),
        "too_dark": dark / max(m.mean, 0.5),
        "frozen": min(m.equal_next, m.equal_prev) / t.frozen_equal,
        "noise": m.noise / noise,
        "colour_cast": 0.0,
        "occlusion": m.flat_blocks / max(t.occlusion_area * 1.8, 0.6),
        "scene_change": 0.0,
        "blur": 0.0,
    }
    if not m.night and m.chroma is not None:
        offset = float(((m.chroma[0] - 128.0) ** 2 + (m.chroma[1] - 128.0) ** 2) ** 0.5)
        out["colour_cast"] = max(offset / t.cast_absolute, m.cast_shift / t.cast_shift)
    if ref is not None:
        out["occlusion"] = m.flattened / t.occlusion_area
        out["scene_change"] = (1.0 - m.correlation) / max(1.0 - t.scene_correlation, 1e-3)
        if ref.sharpness > 0:
            out["blur"] = t.blur_ratio / max(m.sharpness / ref.sharpness, 1e-3)
        if m.correlation >= LAYOUT_KEPT and max(out["too_dark"], out["blur"]) >= 1.0:
            out["occlusion"] = 0.0  # the same scene, only darker or softer: not covered
    if out["too_dark"] >= 2.0:
        out["occlusion"] = 0.0  # nothing to see at all: "too dark" (maybe capped) says it
    return {k: min(v, 99.0) for k, v in out.items()}


def suppress(raw: dict[str, float]) -> dict[str, float]:
    """Zero the kinds explained by a kind that fires (order of KINDS)."""
    out = dict(raw)
    for kind in KINDS:
        if out.get(kind, 0.0) >= 1.0:
            for other in _EXPLAINS.get(kind, ()):
                out[other] = 0.0
    return out


def healthy(raw: dict[str, float]) -> bool:
    """Whether a sample may become the reference: nothing fires on absolute measures.

    Call it with the scores computed without a reference (occlusion is then judged
    on flat blocks alone).
    """
    absolute = ("signal_loss", "too_bright", "too_dark", "frozen", "noise", "occlusion")
    return all(raw[k] < 0.8 for k in absolute)


def reason(kind: str, m: Measures, score: float) -> tuple[str, str]:
    """The reason in words, zh-CN and en, with the figure that decided it."""
    zh, en = NAMES[kind]
    figures = {
        "signal_loss": (
            f"{m.dominant:.0%} 的画面为同一亮度",
            f"{m.dominant:.0%} of the picture is one flat level",
        ),
        "too_bright": (
            f"平均亮度 {m.mean:.0f}，过曝 {m.saturated:.0%}",
            f"mean luma {m.mean:.0f}, {m.saturated:.0%} saturated",
        ),
        "occlusion": (
            f"{m.flattened or m.flat_blocks:.0%} 的画面被遮挡",
            f"{m.flattened or m.flat_blocks:.0%} of the picture covered",
        ),
        "too_dark": (
            f"平均亮度 {m.mean:.0f}"
            + ("，画面几乎全黑（可能镜头被完全遮盖）" if score >= 2 else ""),
            f"mean luma {m.mean:.0f}" + (", almost black (lens capped?)" if score >= 2 else ""),
        ),
        "frozen": (
            f"{m.equal_prev:.1%} 像素与上次采样完全相同",
            f"{m.equal_prev:.1%} of pixels identical to the last sample",
        ),
        "scene_change": (
            f"与参考画面相关度 {m.correlation:.2f}",
            f"correlation with the reference {m.correlation:.2f}",
        ),
        "blur": (
            f"清晰度明显低于参考画面（评分 {score:.1f}）",
            f"sharpness well below the reference (score {score:.1f})",
        ),
        "colour_cast": (
            f"色度偏移 {m.cast_shift:.0f}",
            f"chroma shifted by {m.cast_shift:.0f} levels",
        ),
        "noise": (f"噪声 σ={m.noise:.1f}", f"noise sigma {m.noise:.1f} levels"),
    }
    fz, fe = figures[kind]
    return f"{zh}：{fz}", f"{en}: {fe}"


@dataclass(slots=True)
class KindState:
    """Hysteresis for one kind: raise after N samples over, clear after M under."""

    active: bool = False
    over: int = 0
    under: int = 0
    since: float = 0.0
    event_id: str = ""
    peak: float = 0.0
    snapshot: bool = False


@dataclass
class StateMachine:
    """All kinds of one camera; ``update`` returns the kinds that changed state."""

    raise_after: int = 2
    clear_after: int = 2
    clear_ratio: float = 0.8
    states: dict[str, KindState] = field(default_factory=lambda: {k: KindState() for k in KINDS})

    def update(self, t: float, score: dict[str, float]) -> list[str]:
        changed = []
        for kind, st in self.states.items():
            s = score.get(kind, 0.0)
            if not st.active:
                st.over = st.over + 1 if s >= 1.0 else 0
                if st.over >= self.raise_after:
                    st.active, st.over, st.under, st.since, st.peak = True, 0, 0, t, s
                    changed.append(kind)
            else:
                st.peak = max(st.peak, s)
                st.under = st.under + 1 if s < self.clear_ratio else 0
                if st.under >= self.clear_after:
                    st.active, st.under, st.over = False, 0, 0
                    changed.append(kind)
        return changed

    def active(self) -> list[str]:
        return [k for k, st in self.states.items() if st.active]
