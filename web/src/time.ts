// Showing instants in a time zone and reading wall-clock input in one (Intl only). The calendar
// rules of recurrence are the server's: see POST /v1/recurrence/preview.

export const browserZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

export function zones(): string[] {
  const all = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf?.("timeZone") ?? [];
  const list = new Set(["UTC", ...all, browserZone()]);
  return [...list].sort((a, b) => (a === "UTC" ? -1 : b === "UTC" ? 1 : a.localeCompare(b)));
}

const partsCache = new Map<string, Intl.DateTimeFormat>();
function wallFormat(tz: string): Intl.DateTimeFormat {
  let f = partsCache.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    partsCache.set(tz, f);
  }
  return f;
}

/** The wall-clock fields of an instant in ``tz``, as milliseconds of a UTC date with the same fields. */
function wallMillis(ms: number, tz: string): number {
  const p: Record<string, number> = {};
  for (const part of wallFormat(tz).formatToParts(new Date(ms))) if (part.type !== "literal") p[part.type] = Number(part.value);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second);
}

const pad = (n: number): string => String(n).padStart(2, "0");

/** A ``datetime-local`` value (wall clock in ``tz``) as an RFC 3339 UTC instant. */
export function zonedToUtc(local: string, tz: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(local);
  if (!m) throw new Error(`not a date and time: ${local}`);
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] ?? 0));
  let guess = wall - (wallMillis(wall, tz) - wall);
  guess = wall - (wallMillis(guess, tz) - guess);
  return new Date(guess).toISOString().replace(".000Z", "Z");
}

/** An instant as a ``datetime-local`` value in ``tz``. */
export function utcToZoned(iso: string, tz: string): string {
  const d = new Date(wallMillis(Date.parse(iso), tz));
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

export function formatIn(iso: string, tz: string, withZone = false): string {
  return new Intl.DateTimeFormat(undefined, {
    timeZone: tz,
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    ...(withZone ? { timeZoneName: "short" } : {}),
  }).format(new Date(iso));
}

export function relative(iso: string): string {
  const diff = Date.parse(iso) - Date.now();
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const abs = Math.abs(diff);
  if (abs < 60_000) return rtf.format(Math.round(diff / 1000), "second");
  if (abs < 3_600_000) return rtf.format(Math.round(diff / 60_000), "minute");
  if (abs < 86_400_000) return rtf.format(Math.round(diff / 3_600_000), "hour");
  return rtf.format(Math.round(diff / 86_400_000), "day");
}

/** Start of today and of the day ``days`` ahead, in the browser's zone, as RFC 3339 instants. */
export function dayBoundary(days: number): string {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  d.setDate(d.getDate() + days);
  return d.toISOString();
}

/** "-PT15M" → "15 minutes before"; other forms are shown as written. */
export function describeOffset(offset: string): string {
  const m = /^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(offset);
  if (!m) return offset;
  const units: [string | undefined, string][] = [
    [m[2], "week"],
    [m[3], "day"],
    [m[4], "hour"],
    [m[5], "minute"],
    [m[6], "second"],
  ];
  const text = units
    .filter(([n]) => n && Number(n) > 0)
    .map(([n, u]) => `${Number(n)} ${u}${Number(n) === 1 ? "" : "s"}`)
    .join(" ");
  if (!text) return "at the scheduled time";
  return `${text} ${m[1] === "-" ? "before" : "after"}`;
}
