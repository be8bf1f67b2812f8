"""Accuracy of the diagnosis on the synthetic clips, per kind, and the OpenCV reference.

A clip counts as found for its kind when that kind is raised during the fault (or
within ``raise_after`` samples after it starts) and cleared again after it ends; every
other kind raised anywhere in a clip is a false state. The reference pipeline is the
textbook one the issue compares against: Laplacian variance (blur), histogram
statistics (dark, bright, flat), absdiff (frozen, noise, occlusion, scene change),
with fixed thresholds and the first sample as the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from gateway.config import DiagnosisSettings
from gateway.diagnosis.camera import CameraDiagnoser
from gateway.diagnosis.judge import KINDS
from gateway.diagnosis.measure import Picture
from gateway.diagnosis.synth import FAULTS, SynthClip, make_clip

Raised = list[tuple[str, int, int | None]]  # kind, raised at sample, cleared at sample
Runner = Callable[[SynthClip], Raised]


def run_gateway(clip: SynthClip, settings: DiagnosisSettings | None = None) -> Raised:
    """Our diagnosis over one clip: which kinds were raised and cleared, when."""
    diag = CameraDiagnoser("synth", settings or DiagnosisSettings(), lambda e, j: None)
    open_: dict[str, int] = {}
    out: Raised = []
    for i, (pic, following) in enumerate(clip.samples):
        for ev in diag.feed(pic, following, float(i * 10)):
            kind = ev.data["kind"]
            if ev.end is None:
                open_[kind] = i
            else:
                out.append((kind, open_.pop(kind), i))
    out += [(k, i, None) for k, i in open_.items()]
    return out


class OpenCvReference:
    """The OpenCV textbook pipeline with fixed thresholds; raises after 2 samples over."""

    def __init__(self) -> None:
        self.ref: Picture | None = None
        self.ref_lap = 0.0
        self.prev: Picture | None = None

    def kinds(self, pic: Picture, following: Picture) -> set[str]:
        y = pic.luma
        lap = float(cv2.Laplacian(y, cv2.CV_64F).var())
        hist = cv2.calcHist([y], [0], None, [256], [0, 256]).ravel() / y.size
        mean = float(np.dot(hist, np.arange(256)))
        out = set()
        if hist.max() > 0.6:
            out.add("signal_loss")
        if mean < 40:
            out.add("too_dark")
        if mean > 215 or hist[245:].sum() > 0.5:
            out.add("too_bright")
        diff = cv2.absdiff(y, following.luma)
        if (
            self.prev is not None
            and cv2.countNonZero(cv2.absdiff(y, self.prev.luma)) < 0.03 * y.size
        ):
            out.add("frozen")
        if float(np.mean(diff)) > 12:
            out.add("noise")
        if pic.u is not None and pic.v is not None:
            offset = np.hypot(float(pic.u.mean()) - 128, float(pic.v.mean()) - 128)
            if offset > 20:
                out.add("colour_cast")
        if self.ref is None:
            if not out:
                self.ref, self.ref_lap = pic, lap
        else:
            if lap < 0.3 * self.ref_lap:
                out.add("blur")
            change = cv2.absdiff(y, self.ref.luma)
            if float(np.mean(change > 40)) > 0.5:
                out.add("scene_change")
            std = cv2.blur(cv2.absdiff(y, cv2.blur(y, (9, 9))), (9, 9))
            if float(np.mean(std < 2)) > 0.4:
                out.add("occlusion")
        self.prev = pic
        return out


def run_opencv(clip: SynthClip) -> Raised:
    """The OpenCV reference over one clip, with the same 2-over / 2-under hysteresis."""
    ref = OpenCvReference()
    over: dict[str, int] = {}
    under: dict[str, int] = {}
    open_: dict[str, int] = {}
    out: Raised = []
    for i, (pic, following) in enumerate(clip.samples):
        now = ref.kinds(pic, following)
        for kind in KINDS:
            if kind not in open_:
                over[kind] = over.get(kind, 0) + 1 if kind in now else 0
                if over[kind] >= 2:
                    open_[kind], under[kind] = i, 0
            else:
                under[kind] = under.get(kind, 0) + 1 if kind not in now else 0
                if under[kind] >= 2:
                    out.append((kind, open_.pop(kind), i))
    out += [(k, i, None) for k, i in open_.items()]
    return out


@dataclass
class KindScore:
    """Per kind: clips with the fault, found, raises of this kind, true ones."""

    clips: int = 0
    found: int = 0
    raised: int = 0
    true_raised: int = 0
    false_on_quiet: int = 0
    misses: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.clips if self.clips else 1.0

    @property
    def precision(self) -> float:
        return self.true_raised / self.raised if self.raised else 1.0


def default_clips(seeds: int = 6) -> list[SynthClip]:
    """Every fault in day and night form (colour cast by day only: IR is grey)."""
    clips = []
    for kind in FAULTS:
        for night in (False, True):
            if kind == "colour_cast" and night:
                continue
            clips += [make_clip(kind, seed, night) for seed in range(seeds)]
    return clips


def evaluate(clips: Iterable[SynthClip], runner: Runner) -> dict[str, KindScore]:
    """Precision and recall per kind over the clips."""
    table = {k: KindScore() for k in KINDS}
    for clip in clips:
        raised = runner(clip)
        start, end = clip.fault
        if clip.kind is not None:
            table[clip.kind].clips += 1
            ok = any(
                k == clip.kind
                and start <= at <= start + 2
                and cleared is not None
                and cleared >= end
                for k, at, cleared in raised
            )
            if ok:
                table[clip.kind].found += 1
            else:
                table[clip.kind].misses.append(clip.name)
        for kind, at, _cleared in raised:
            score = table[kind]
            score.raised += 1
            if kind == clip.kind and start <= at <= start + 2:
                score.true_raised += 1
            else:
                score.false.append(f"{clip.name}@{at}")
                if clip.kind is None:
                    score.false_on_quiet += 1
    return table


def format_table(ours: dict[str, KindScore], ref: dict[str, KindScore] | None = None) -> str:
    """A Markdown table: per kind precision and recall, ours and the reference's."""
    lines = ["| kind | clips | precision | recall | OpenCV ref precision | OpenCV ref recall |"]
    lines.append("|---|---|---|---|---|---|")
    for kind in KINDS:
        s = ours[kind]
        r = ref[kind] if ref else None
        rp = f"{r.precision:.2f}" if r else "-"
        rr = f"{r.recall:.2f}" if r else "-"
        lines.append(f"| {kind} | {s.clips} | {s.precision:.2f} | {s.recall:.2f} | {rp} | {rr} |")
    return "\n".join(lines)
