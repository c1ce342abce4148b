// The list's filters: read from and written to the page URL (so a view can be bookmarked), and
// turned into the query parameters of GET /v1/tasks.
import { dayBoundary } from "./time";

export interface Filters {
  q: string;
  status: "open" | "completed" | "all";
  importance: "" | "urgent" | "high" | "medium" | "low" | "none";
  tags: string[];
  tagMode: "all" | "any";
  when: "" | "overdue" | "today" | "week" | "dated" | "undated" | "range";
  from: string; // YYYY-MM-DD, with when = "range"
  to: string;
  recurring: "" | "yes" | "no";
  sort: string;
}

export const SORTS: [string, string][] = [
  ["", "Due date, then importance"],
  ["-priority,due_at", "Importance"],
  ["-created_at", "Newest first"],
  ["-updated_at", "Recently changed"],
  ["title", "Name (A to Z)"],
  ["relevance", "Best match (with a search)"],
];

const IMPORTANCE: Record<string, string> = {
  urgent: "urgent",
  high: "high,urgent",
  medium: "medium,high,urgent",
  low: "low,medium,high,urgent",
  none: "none",
};

export function readFilters(search: string): Filters {
  const p = new URLSearchParams(search);
  const pick = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const v = p.get(name) as T | null;
    return v !== null && allowed.includes(v) ? v : fallback;
  };
  return {
    q: p.get("q") ?? "",
    status: pick("status", ["open", "completed", "all"] as const, "open"),
    importance: pick("importance", ["", "urgent", "high", "medium", "low", "none"] as const, ""),
    tags: (p.get("tags") ?? "").split(",").filter(Boolean),
    tagMode: pick("tag_mode", ["all", "any"] as const, "all"),
    when: pick("when", ["", "overdue", "today", "week", "dated", "undated", "range"] as const, ""),
    from: /^\d{4}-\d{2}-\d{2}$/.test(p.get("from") ?? "") ? p.get("from")! : "",
    to: /^\d{4}-\d{2}-\d{2}$/.test(p.get("to") ?? "") ? p.get("to")! : "",
    recurring: pick("recurring", ["", "yes", "no"] as const, ""),
    sort: pick("sort", SORTS.map(([v]) => v), ""),
  };
}

/** The page URL's query for these filters (defaults left out). */
export function pageQuery(f: Filters): string {
  const p = new URLSearchParams();
  if (f.q) p.set("q", f.q);
  if (f.status !== "open") p.set("status", f.status);
  if (f.importance) p.set("importance", f.importance);
  if (f.tags.length) p.set("tags", f.tags.join(","));
  if (f.tags.length && f.tagMode !== "all") p.set("tag_mode", f.tagMode);
  if (f.when) p.set("when", f.when);
  if (f.when === "range" && f.from) p.set("from", f.from);
  if (f.when === "range" && f.to) p.set("to", f.to);
  if (f.recurring) p.set("recurring", f.recurring);
  if (f.sort) p.set("sort", f.sort);
  const text = p.toString();
  return text ? `?${text}` : "";
}

export function apiQuery(f: Filters, cursor: string | null, limit = 30): URLSearchParams {
  const p = new URLSearchParams();
  if (f.q.trim()) p.set("q", f.q.trim());
  p.set("status", f.status);
  if (f.importance) p.set("priority", IMPORTANCE[f.importance]);
  if (f.tags.length) {
    p.set("tags", f.tags.join(","));
    p.set("tag_mode", f.tagMode);
  }
  if (f.when === "overdue") p.set("overdue", "true");
  if (f.when === "today") [p.set("due_after", dayBoundary(0)), p.set("due_before", dayBoundary(1))];
  if (f.when === "week") [p.set("due_after", dayBoundary(0)), p.set("due_before", dayBoundary(7))];
  if (f.when === "dated") p.set("has_due", "true");
  if (f.when === "undated") p.set("has_due", "false");
  // A range of whole days in the browser's zone: from the start of the first to the end of the last.
  if (f.when === "range" && f.from) p.set("due_after", new Date(`${f.from}T00:00`).toISOString());
  if (f.when === "range" && f.to) {
    const end = new Date(`${f.to}T00:00`);
    end.setDate(end.getDate() + 1);
    p.set("due_before", end.toISOString());
  }
  if (f.recurring) p.set("recurring", f.recurring === "yes" ? "true" : "false");
  if (f.sort && (f.sort !== "relevance" || f.q.trim())) p.set("sort", f.sort);
  p.set("limit", String(limit));
  if (cursor) p.set("cursor", cursor);
  return p;
}
