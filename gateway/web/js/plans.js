// Plans (预案) on the wall's toolbar: pick one, launch it after a confirmation.
import { api, el } from "./api.js";
import { t } from "./i18n.js";

export class PlanLauncher {
  constructor(pick, button, notice, { canLaunch }) {
    this.pick = pick;
    this.button = button;
    this.notice = notice;
    this.plans = [];
    pick.hidden = button.hidden = !canLaunch;
    button.addEventListener("click", () => this.launch());
  }

  async load() {
    if (this.button.hidden) return;
    try {
      this.plans = await api("/api/v1/plans");
    } catch {
      this.plans = [];
    }
    const current = this.pick.value;
    this.pick.replaceChildren(
      el("option", { value: "" }, this.plans.length ? t("choose_plan") : t("no_plans")),
      ...this.plans.map((p) => el("option", { value: String(p.id), selected: String(p.id) === current }, p.name)));
  }

  async launch() {
    const plan = this.plans.find((p) => String(p.id) === this.pick.value);
    if (!plan) { this.notice.textContent = t("choose_plan"); return; }
    // A plan moves cameras and starts recordings: the operator says so twice.
    if (!confirm(`${t("confirm_plan")}${t("colon")}${plan.name}`)) return;
    this.button.disabled = true;
    try {
      const out = await api(`/api/v1/plans/${plan.id}/launch`, { method: "POST" });
      const failed = out.steps.filter((s) => s.ok === false);
      this.notice.textContent = failed.length
        ? `${t("plan_partly")}${t("colon")}${failed.map((s) => `${s.step} ${s.camera || ""} ${s.error}`).join("; ")}`
        : `${t("plan_launched")}${t("colon")}${plan.name}${plan.message ? ` — ${plan.message}` : ""}`;
      this.notice.dataset.plan = failed.length ? "partly" : "ok";
    } catch (err) {
      this.notice.textContent = `${t("failed")}: ${err.message}`;
      this.notice.dataset.plan = "failed";
    } finally {
      this.button.disabled = false;
    }
  }
}
