// The recurrence editor's form <-> the RRULE text the API stores. Only serialisation lives here:
// which dates a rule produces is asked of the server (POST /v1/recurrence/preview).

export type Kind = "never" | "daily" | "weekly" | "monthly" | "yearly" | "custom";
export const WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"] as const;
export const WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

export interface RepeatForm {
  kind: Kind;
  interval: number;
  weekdays: string[];
  monthlyBy: "day" | "weekday";
  ends: "never" | "count" | "until";
  count: number;
  until: string; // YYYY-MM-DD
  anchor: "due" | "completion";
  custom: string;
}

export const emptyRepeat = (): RepeatForm => ({
  kind: "never",
  interval: 1,
  weekdays: [],
  monthlyBy: "day",
  ends: "never",
  count: 5,
  until: "",
  anchor: "due",
  custom: "",
});

/** Day of month, weekday index (0 = Monday) and ordinal ("2" = second, -1 = last) of a YYYY-MM-DD date. */
export function dayFacts(localDate: string): { day: number; weekday: number; ordinal: number } | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(localDate);
  if (!m) return null;
  const day = +m[3];
  const weekday = (new Date(Date.UTC(+m[1], +m[2] - 1, day)).getUTCDay() + 6) % 7;
  const ordinal = Math.ceil(day / 7) === 5 ? -1 : Math.ceil(day / 7);
  return { day, weekday, ordinal };
}

const ORDINALS: Record<string, string> = { "1": "first", "2": "second", "3": "third", "4": "fourth", "-1": "last" };
export const ordinalName = (n: number): string => ORDINALS[String(n)] ?? `${n}th`;

export function toRule(form: RepeatForm, dueLocal: string): string | null {
  if (form.kind === "never") return null;
  if (form.kind === "custom") return form.custom.trim().replace(/^RRULE:/i, "") || null;
  const parts = [`FREQ=${form.kind.toUpperCase()}`];
  if (form.interval > 1) parts.push(`INTERVAL=${form.interval}`);
  const facts = dayFacts(dueLocal);
  if (form.kind === "weekly" && form.weekdays.length > 0) {
    parts.push(`BYDAY=${WEEKDAYS.filter((d) => form.weekdays.includes(d)).join(",")}`);
  }
  if (form.kind === "monthly" && facts) {
    parts.push(form.monthlyBy === "day" ? `BYMONTHDAY=${facts.day}` : `BYDAY=${facts.ordinal}${WEEKDAYS[facts.weekday]}`);
  }
  if (form.ends === "count") parts.push(`COUNT=${form.count}`);
  if (form.ends === "until" && form.until) parts.push(`UNTIL=${form.until.replace(/-/g, "")}`);
  return parts.join(";");
}

export function fromRule(rule: string | null | undefined, anchor: "due" | "completion" = "due"): RepeatForm {
  const form = { ...emptyRepeat(), anchor };
  if (!rule) return form;
  const custom = { ...form, kind: "custom" as Kind, custom: rule };
  const parts = new Map<string, string>();
  for (const p of rule.split(";")) {
    const [k, v] = p.split("=");
    if (!k || v === undefined || parts.has(k)) return custom;
    parts.set(k.toUpperCase(), v.toUpperCase());
  }
  const freq = parts.get("FREQ")?.toLowerCase();
  if (freq !== "daily" && freq !== "weekly" && freq !== "monthly" && freq !== "yearly") return custom;
  form.kind = freq;
  for (const [k, v] of parts) {
    if (k === "FREQ") continue;
    else if (k === "INTERVAL" && /^\d+$/.test(v)) form.interval = +v;
    else if (k === "COUNT" && /^\d+$/.test(v)) [form.ends, form.count] = ["count", +v];
    else if (k === "UNTIL" && /^\d{8}/.test(v)) [form.ends, form.until] = ["until", `${v.slice(0, 4)}-${v.slice(4, 6)}-${v.slice(6, 8)}`];
    else if (k === "BYDAY" && freq === "weekly" && v.split(",").every((d) => (WEEKDAYS as readonly string[]).includes(d))) form.weekdays = v.split(",");
    else if (k === "BYDAY" && freq === "monthly" && /^(-1|[1-4])(MO|TU|WE|TH|FR|SA|SU)$/.test(v)) form.monthlyBy = "weekday";
    else if (k === "BYMONTHDAY" && freq === "monthly" && /^\d+$/.test(v)) form.monthlyBy = "day";
    else return custom;
  }
  return form;
}
