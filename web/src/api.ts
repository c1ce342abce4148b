// The documented public REST API (/v1, see /v1/openapi.json); nothing else.

export type Priority = "none" | "low" | "medium" | "high" | "urgent";
export const PRIORITIES: Priority[] = ["none", "low", "medium", "high", "urgent"];

export interface Recurrence {
  rule: string;
  anchor: "due" | "completion";
}
export interface Reminder {
  offset?: string;
  at?: string;
}
export interface Task {
  id: string;
  title: string;
  description: string;
  status: "open" | "completed";
  priority: Priority;
  tags: string[];
  due_at: string | null;
  timezone: string;
  recurrence: Recurrence | null;
  reminders: Reminder[];
  series_id: string | null;
  occurrence: number;
  completed_at: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}
export interface TaskFields {
  title?: string;
  description?: string;
  priority?: Priority;
  tags?: string[];
  due_at?: string | null;
  timezone?: string;
  recurrence?: Recurrence | null;
  reminders?: Reminder[];
}
export interface Page {
  items: Task[];
  next_cursor: string | null;
}
export interface TagCount {
  name: string;
  count: number;
}
export interface HistoryEntry {
  event_id: string;
  type: string;
  time: string;
  actor: string;
  changes: Record<string, [unknown, unknown]> | null;
}
export interface Notification {
  id: string;
  task_id: string;
  title: string;
  fire_at: string;
  created_at: string;
  late: boolean;
}
export interface SignInOptions {
  dev_token: boolean;
  oidc: { issuer: string; client_id: string; scope: string } | null;
}
export interface Preview {
  rule: string;
  anchor: string;
  occurrences: string[];
}

/** An RFC 9457 problem, as the API sends it. */
export interface Problem {
  type?: string;
  title: string;
  status: number;
  detail?: string;
  errors?: { field: string; message: string; type?: string }[];
}

export class ApiError extends Error {
  constructor(
    readonly problem: Problem,
    readonly etag: string | null = null,
  ) {
    super(problem.detail ?? problem.title);
  }
  get status(): number {
    return this.problem.status;
  }
}

type TokenSource = () => string | null;
let tokenSource: TokenSource = () => null;
let onUnauthorized: () => void = () => {};

export function configure(source: TokenSource, unauthorized: () => void): void {
  tokenSource = source;
  onUnauthorized = unauthorized;
}

interface Sent {
  body: unknown;
  etag: string | null;
  status: number;
}

async function request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Sent> {
  const h: Record<string, string> = { Accept: "application/json", ...headers };
  const token = tokenSource();
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let resp: Response;
  try {
    resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-cache" });
  } catch (err) {
    throw new ApiError({ title: "Network error", status: 0, detail: `the server could not be reached (${String(err)})` });
  }
  const etag = resp.headers.get("ETag");
  if (resp.status === 304 || resp.status === 204) return { body: null, etag, status: resp.status };
  const type = resp.headers.get("Content-Type") ?? "";
  const parsed: unknown = type.includes("json") ? await resp.json().catch(() => null) : null;
  if (!resp.ok) {
    const problem: Problem =
      parsed && typeof parsed === "object" && "title" in parsed
        ? (parsed as Problem)
        : { title: resp.statusText || "Error", status: resp.status, detail: `the server answered ${resp.status}` };
    if (resp.status === 401 && token) onUnauthorized();
    throw new ApiError(problem, etag);
  }
  return { body: parsed, etag, status: resp.status };
}

/** A random Idempotency-Key (crypto.randomUUID exists only on https and localhost; a LAN address over http has not). */
function newKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export const etagOf = (t: Task): string => `"${t.id}-v${t.version}"`;

export const api = {
  signInOptions: async () => (await request("GET", "/v1/auth/options")).body as SignInOptions,
  devToken: async (user: string) =>
    ((await request("POST", "/v1/auth/dev-token", { user })).body as { access_token: string }).access_token,
  list: async (query: URLSearchParams) => (await request("GET", `/v1/tasks?${query}`)).body as Page,
  get: async (id: string) => (await request("GET", `/v1/tasks/${encodeURIComponent(id)}`)).body as Task,
  create: async (fields: TaskFields) => (await request("POST", "/v1/tasks", fields, { "Idempotency-Key": newKey() })).body as Task,
  update: async (task: Task, fields: TaskFields) =>
    (await request("PATCH", `/v1/tasks/${encodeURIComponent(task.id)}`, fields, { "If-Match": etagOf(task) })).body as Task,
  complete: async (task: Task) =>
    (await request("POST", `/v1/tasks/${encodeURIComponent(task.id)}/complete`, undefined, { "If-Match": etagOf(task) })).body as Task,
  reopen: async (task: Task) =>
    (await request("POST", `/v1/tasks/${encodeURIComponent(task.id)}/reopen`)).body as Task,
  remove: async (task: Task) => {
    await request("DELETE", `/v1/tasks/${encodeURIComponent(task.id)}`, undefined, { "If-Match": etagOf(task) });
  },
  /** A DELETE that survives the page being closed (deferred deletes that were not undone). */
  removeOnExit: (task: Task) => {
    const token = tokenSource();
    void fetch(`/v1/tasks/${encodeURIComponent(task.id)}`, {
      method: "DELETE",
      keepalive: true,
      headers: { Authorization: `Bearer ${token}`, "If-Match": etagOf(task) },
    });
  },
  history: async (id: string) =>
    ((await request("GET", `/v1/tasks/${encodeURIComponent(id)}/history`)).body as { items: HistoryEntry[] }).items,
  tags: async () => ((await request("GET", "/v1/tags")).body as { items: TagCount[] }).items,
  /** The inbox, or null when it has not changed since ``etag`` (304). */
  notifications: async (etag: string | null) => {
    const sent = await request("GET", "/v1/notifications", undefined, etag ? { "If-None-Match": etag } : {});
    return sent.status === 304 ? null : { items: (sent.body as { items: Notification[] }).items, etag: sent.etag };
  },
  settings: async () => (await request("GET", "/v1/settings")).body as { webhook_url: string | null },
  putSettings: async (webhook_url: string | null) =>
    (await request("PUT", "/v1/settings", { webhook_url })).body as { webhook_url: string | null },
  preview: async (body: { rule: string; anchor: string; due_at: string; timezone: string }) =>
    (await request("POST", "/v1/recurrence/preview", body)).body as Preview,
};
