// The app: sign-in, then the task list with its filters, quick add, the editor and the dialogs.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, configure, type HistoryEntry, type Notification, type Problem, type SignInOptions, type TagCount, type Task } from "./api";
import { forgetToken, oidcFinish, storedToken, tokenUser } from "./auth";
import { Dialog } from "./dialog";
import { Editor } from "./editor";
import { apiQuery, pageQuery, readFilters, SORTS, type Filters } from "./filters";
import { ProblemView } from "./problem";
import { SignIn } from "./signin";
import { formatIn, relative } from "./time";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 5000;
const UNDO_MS = 6000;

interface Toast {
  id: number;
  text: string;
  undo?: () => void;
}

export function App() {
  const [token, setToken] = useState<string | null>(storedToken());
  const [options, setOptions] = useState<SignInOptions | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  // Before any child's effect asks the API for something.
  configure(storedToken, () => {
    forgetToken();
    setToken(null);
    setNotice("Your session ended or the token was refused; sign in again.");
  });
  useEffect(() => {
    api
      .signInOptions()
      .then(async (opts) => {
        setOptions(opts);
        if (opts.oidc && (await oidcFinish(opts.oidc).catch((err) => (setNotice(`Single sign-on failed: ${String(err)}`), false)))) {
          setToken(storedToken());
        }
      })
      .catch(() => setOptions({ dev_token: false, oidc: null }));
  }, []);

  if (!token) return <SignIn options={options} notice={notice} onSignedIn={() => setToken(storedToken())} />;
  return (
    <Workspace
      token={token}
      onSignOut={() => {
        forgetToken();
        setNotice("Signed out.");
        setToken(null);
      }}
    />
  );
}

type Open =
  | { kind: "editor"; task: Task | null }
  | { kind: "history"; task: Task }
  | { kind: "inbox" }
  | { kind: "settings" }
  | { kind: "help" }
  | null;

const isTyping = (el: EventTarget | null): boolean =>
  el instanceof HTMLElement && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

function Workspace({ token, onSignOut }: { token: string; onSignOut: () => void }) {
  const user = tokenUser(token) ?? "you";
  const [filters, setFilters] = useState<Filters>(() => readFilters(location.search));
  const [qText, setQText] = useState(filters.q);
  const [tasks, setTasks] = useState<Task[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [tags, setTags] = useState<TagCount[]>([]);
  const [selected, setSelected] = useState(0);
  const [open, setOpen] = useState<Open>(null);
  const [toasts, setToasts] = useState<Toast[]>([]);
  const [inbox, setInbox] = useState<Notification[]>([]);
  const seenKey = `taskflow.seen.${user}`;
  const [seen, setSeen] = useState<string>(() => localStorage.getItem(seenKey) ?? "");
  // On a phone the filters fold away behind a button; wider screens always show them.
  const [filtersOpen, setFiltersOpen] = useState(() => !matchMedia("(max-width: 640px)").matches);
  const [theme, setTheme] = useState<string>(() => document.documentElement.dataset.theme ?? "");
  const pendingDeletes = useRef(new Map<string, { task: Task; timer: number }>());
  const listSeq = useRef(0);
  // The selected row as a ref as well as state: keys pressed faster than renders see the latest.
  const selRef = useRef(0);
  const search = useRef<HTMLInputElement>(null);

  const toast = useCallback((text: string, undo?: () => void) => {
    const id = Date.now() + Math.random();
    setToasts((t) => [...t.slice(-2), { id, text, undo }]);
    setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), UNDO_MS);
  }, []);
  const dropToast = (id: number) => setToasts((t) => t.filter((x) => x.id !== id));

  // --- list ------------------------------------------------------------------------------
  const query = apiQuery(filters, null).toString();
  const load = useCallback(
    async (append: boolean, from: string | null = null) => {
      const mine = ++listSeq.current;
      setLoading(true);
      try {
        const page = await api.list(apiQuery(filters, from));
        if (mine !== listSeq.current) return;
        const items = page.items.filter((t) => !pendingDeletes.current.has(t.id));
        setTasks((old) => (append ? [...old, ...items.filter((t) => !old.some((o) => o.id === t.id))] : items));
        setCursor(page.next_cursor);
        setProblem(null);
      } catch (err) {
        if (err instanceof ApiError && mine === listSeq.current) setProblem(err.problem);
      } finally {
        if (mine === listSeq.current) {
          setLoading(false);
          setLoaded(true);
        }
      }
    },
    [query],
  );
  const refreshTags = useCallback(() => api.tags().then(setTags).catch(() => {}), []);

  useEffect(() => {
    history.replaceState(null, "", `/${pageQuery(filters)}`);
    selRef.current = 0;
    setSelected(0);
    void load(false);
  }, [query]);
  useEffect(() => void refreshTags(), []);
  useEffect(() => {
    // The first page of tasks is on screen and every control answers (bench/web_bench.py).
    if (loaded && performance.getEntriesByName("taskflow:interactive").length === 0) performance.mark("taskflow:interactive");
  }, [loaded]);

  // Debounced search: the API matches word prefixes, so every keystroke narrows the list.
  useEffect(() => {
    if (qText === filters.q) return;
    const t = setTimeout(() => setFilters((f) => ({ ...f, q: qText })), 250);
    return () => clearTimeout(t);
  }, [qText]);

  // Infinite scroll: the next page loads when the end of the list comes into view.
  const sentinel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !cursor) return;
    const obs = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !loading) void load(true, cursor);
    });
    obs.observe(el);
    return () => obs.disconnect();
  }, [cursor, loading, load]);

  const replace = (task: Task) => setTasks((list) => list.map((t) => (t.id === task.id ? task : t)));
  const visibleAfter = (task: Task) => filters.status === "all" || task.status === filters.status;

  const conflictIn = async (err: unknown, task: Task) => {
    if (!(err instanceof ApiError)) throw err;
    if (err.status !== 412) return setProblem(err.problem);
    setProblem({
      title: "This task changed elsewhere",
      status: 412,
      detail: `“${task.title}” was changed since the list was loaded (another tab or device, or the server). It has been reloaded: check it and try again.`,
    });
    try {
      replace(await api.get(task.id));
    } catch (e) {
      if (e instanceof ApiError) setProblem(e.problem);
    }
  };

  const toggle = async (task: Task) => {
    try {
      if (task.status === "open") {
        const done = await api.complete(task);
        if (visibleAfter(done)) replace(done);
        else setTasks((list) => list.filter((t) => t.id !== task.id));
        toast(`Completed “${task.title}”.`, async () => {
          const back = await api.reopen(done);
          setTasks((list) => (list.some((t) => t.id === back.id) ? list.map((t) => (t.id === back.id ? back : t)) : [back, ...list]));
          toast(`Reopened “${task.title}”.`);
        });
        if (done.recurrence) {
          // The recurrence function creates the next occurrence from the task.completed event.
          for (const wait of [600, 2000]) setTimeout(() => void load(false), wait);
        }
      } else {
        const back = await api.reopen(task);
        if (visibleAfter(back)) replace(back);
        else setTasks((list) => list.filter((t) => t.id !== task.id));
        toast(`Reopened “${task.title}”.`);
      }
    } catch (err) {
      await conflictIn(err, task);
    }
  };

  const remove = (task: Task) => {
    setTasks((list) => list.filter((t) => t.id !== task.id));
    const timer = window.setTimeout(async () => {
      pendingDeletes.current.delete(task.id);
      try {
        await api.remove(task);
        void refreshTags();
      } catch (err) {
        void load(false);
        await conflictIn(err, task);
      }
    }, UNDO_MS);
    pendingDeletes.current.set(task.id, { task, timer });
    toast(`Deleted “${task.title}”.`, () => {
      const pending = pendingDeletes.current.get(task.id);
      if (!pending) return;
      clearTimeout(pending.timer);
      pendingDeletes.current.delete(task.id);
      void load(false);
      toast(`Restored “${task.title}”.`);
    });
  };
  useEffect(() => {
    const flush = () => {
      for (const { task, timer } of pendingDeletes.current.values()) {
        clearTimeout(timer);
        api.removeOnExit(task);
      }
      pendingDeletes.current.clear();
    };
    addEventListener("pagehide", flush);
    return () => removeEventListener("pagehide", flush);
  }, []);

  // --- quick add -------------------------------------------------------------------------
  const [quick, setQuick] = useState("");
  const quickAdd = async (e: Event) => {
    e.preventDefault();
    const words = quick.trim().split(/\s+/);
    const tagsIn = words.filter((w) => /^#[^#\s]+$/.test(w)).map((w) => w.slice(1).toLowerCase());
    const prio = words.map((w) => /^!(low|medium|high|urgent)$/i.exec(w)?.[1].toLowerCase()).find(Boolean);
    const title = words.filter((w) => !/^#[^#\s]+$/.test(w) && !/^!(low|medium|high|urgent)$/i.test(w)).join(" ");
    try {
      const created = await api.create({ title, tags: tagsIn, ...(prio ? { priority: prio as Task["priority"] } : {}) });
      setQuick("");
      setTasks((list) => [created, ...list]);
      toast(`Added “${created.title}”.`);
      void refreshTags();
    } catch (err) {
      if (err instanceof ApiError) setProblem(err.problem);
    }
  };

  // --- inbox: polled with If-None-Match, so an unchanged inbox costs a bodiless 304 --------
  const inboxEtag = useRef<string | null>(null);
  const firstPoll = useRef(true);
  useEffect(() => {
    let stopped = false;
    let timer = 0;
    const poll = async () => {
      try {
        const got = await api.notifications(inboxEtag.current);
        if (got && !stopped) {
          inboxEtag.current = got.etag;
          setInbox((old) => {
            if (!firstPoll.current) {
              const fresh = got.items.filter((n) => !old.some((o) => o.id === n.id));
              for (const n of fresh.slice(0, 3)) toast(`Reminder: “${n.title}”${n.late ? " (late)" : ""}.`);
            }
            return got.items;
          });
          firstPoll.current = false;
        }
      } catch {
        /* shown by the next successful poll; a 401 signs out */
      }
      if (!stopped) timer = window.setTimeout(poll, POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  const unread = inbox.filter((n) => n.created_at > seen).length;
  const markSeen = () => {
    const newest = inbox[0]?.created_at ?? seen;
    localStorage.setItem(seenKey, newest);
    setSeen(newest);
  };

  // --- keyboard --------------------------------------------------------------------------
  const focusRow = (i: number) => {
    const clamped = Math.max(0, Math.min(i, tasks.length - 1));
    selRef.current = clamped;
    setSelected(clamped);
    document.getElementById(`task-${tasks[clamped]?.id}`)?.focus();
  };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      // the DOM, not `open`: this listener is re-registered after the render that closes a dialog,
      // so a key pressed right after Escape would otherwise still see the dialog open
      if (document.querySelector("dialog[open]") || e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
      const selected = Math.max(0, Math.min(selRef.current, tasks.length - 1));
      const current = tasks[selected];
      const actions: Record<string, () => void> = {
        n: () => setOpen({ kind: "editor", task: null }),
        "/": () => search.current?.focus(),
        j: () => focusRow(selected + 1),
        k: () => focusRow(selected - 1),
        x: () => current && void toggle(current),
        e: () => current && setOpen({ kind: "editor", task: current }),
        "?": () => setOpen({ kind: "help" }),
      };
      const act = actions[e.key];
      if (act) {
        e.preventDefault();
        act();
      }
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  });

  const set = (patch: Partial<Filters>) => setFilters((f) => ({ ...f, ...patch }));
  const toggleTagFilter = (name: string) =>
    set({ tags: filters.tags.includes(name) ? filters.tags.filter((t) => t !== name) : [...filters.tags, name] });
  const knownTags = useMemo(() => tags.map((t) => t.name), [tags]);
  const switchTheme = () => {
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const next = (theme || (dark ? "dark" : "light")) === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("taskflow.theme", next);
    setTheme(next);
  };
  const isDark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;

  return (
    <>
      <div class="shell" inert={open !== null} aria-hidden={open !== null ? "true" : undefined}>
        <a class="skip" href="#main">Skip to tasks</a>
        <header class="top">
          <span class="brand" aria-hidden="true">✓</span>
          <strong class="brand-name">TaskFlow</strong>
          <nav aria-label="Account" class="top-actions">
            <button type="button" onClick={() => (markSeen(), setOpen({ kind: "inbox" }))} aria-label={`Inbox, ${unread} unread`}>
              Inbox {unread > 0 && <span class="badge" aria-hidden="true">{unread}</span>}
            </button>
            <button type="button" onClick={() => setOpen({ kind: "settings" })}>Settings</button>
            <button type="button" aria-pressed={isDark} onClick={switchTheme}>Dark theme</button>
            <button type="button" onClick={() => setOpen({ kind: "help" })} aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)">?</button>
            <span class="who">{user}</span>
            <button type="button" onClick={onSignOut}>Sign out</button>
          </nav>
        </header>

        <main id="main">
          <h1 id="main-focus" tabIndex={-1} class="visually-hidden">Tasks</h1>
          <div class="toolbar">
            <div class="search">
              <label for="search" class="visually-hidden">Search tasks</label>
              <input id="search" ref={search} type="search" placeholder="Search tasks  ( / )" value={qText} onInput={(e) => setQText(e.currentTarget.value)} />
            </div>
            <button type="button" class="primary" onClick={() => setOpen({ kind: "editor", task: null })}>New task</button>
          </div>
          <form class="quick" onSubmit={quickAdd}>
            <label for="quick">Quick add</label>
            <input id="quick" value={quick} required placeholder="Pay rent #home !high" aria-describedby="quick-help" onInput={(e) => setQuick(e.currentTarget.value)} />
            <button type="submit">Add task</button>
            <p id="quick-help" class="hint">One line: a name, <code>#tags</code> and <code>!low</code> … <code>!urgent</code>.</p>
          </form>

          <button type="button" class="filters-toggle" aria-expanded={filtersOpen} aria-controls="filters" onClick={() => setFiltersOpen(!filtersOpen)}>
            Filters{pageQuery({ ...filters, q: "" }) ? " (on)" : ""}
          </button>
          <section id="filters" class={filtersOpen ? "filters" : "filters closed"} aria-label="Filters">
            <div class="field">
              <label for="f-status">Show</label>
              <select id="f-status" value={filters.status} onChange={(e) => set({ status: e.currentTarget.value as Filters["status"] })}>
                <option value="open">Open</option>
                <option value="completed">Completed</option>
                <option value="all">All</option>
              </select>
            </div>
            <div class="field">
              <label for="f-importance">Importance</label>
              <select id="f-importance" value={filters.importance} onChange={(e) => set({ importance: e.currentTarget.value as Filters["importance"] })}>
                <option value="">Any</option>
                <option value="urgent">Urgent</option>
                <option value="high">High or more</option>
                <option value="medium">Medium or more</option>
                <option value="low">Low or more</option>
                <option value="none">Not set</option>
              </select>
            </div>
            <div class="field">
              <label for="f-when">When</label>
              <select id="f-when" value={filters.when} onChange={(e) => set({ when: e.currentTarget.value as Filters["when"] })}>
                <option value="">Any time</option>
                <option value="overdue">Overdue</option>
                <option value="today">Today</option>
                <option value="week">Next 7 days</option>
                <option value="dated">With a date</option>
                <option value="undated">Without a date</option>
                <option value="range">Between dates…</option>
              </select>
            </div>
            {filters.when === "range" && (
              <>
                <div class="field">
                  <label for="f-from">Range start</label>
                  <input id="f-from" type="date" value={filters.from} onChange={(e) => set({ from: e.currentTarget.value })} />
                </div>
                <div class="field">
                  <label for="f-to">Range end</label>
                  <input id="f-to" type="date" value={filters.to} onChange={(e) => set({ to: e.currentTarget.value })} />
                </div>
              </>
            )}
            <div class="field">
              <label for="f-kind">Kind</label>
              <select id="f-kind" value={filters.recurring} onChange={(e) => set({ recurring: e.currentTarget.value as Filters["recurring"] })}>
                <option value="">All kinds</option>
                <option value="yes">Recurring</option>
                <option value="no">One-off</option>
              </select>
            </div>
            <div class="field">
              <label for="f-sort">Sort by</label>
              <select id="f-sort" value={filters.sort} onChange={(e) => set({ sort: e.currentTarget.value })}>
                {SORTS.map(([v, text]) => (
                  <option value={v} disabled={v === "relevance" && !filters.q}>{text}</option>
                ))}
              </select>
            </div>
            {tags.length > 0 && (
              <div class="tag-filter" role="group" aria-labelledby="tf-label">
                <span id="tf-label" class="label">Filter by tag</span>
                {tags.map((t) => (
                  <button type="button" class="chip" aria-pressed={filters.tags.includes(t.name)} onClick={() => toggleTagFilter(t.name)}>
                    #{t.name} <span class="count">{t.count}</span>
                  </button>
                ))}
                {filters.tags.length > 1 && (
                  <span class="field inline">
                    <label for="f-mode">Match</label>
                    <select id="f-mode" value={filters.tagMode} onChange={(e) => set({ tagMode: e.currentTarget.value as Filters["tagMode"] })}>
                      <option value="all">every tag</option>
                      <option value="any">any tag</option>
                    </select>
                  </span>
                )}
              </div>
            )}
          </section>

          <ProblemView problem={problem} onDismiss={() => setProblem(null)} />

          <ul class="tasks" aria-label="Tasks" aria-busy={loading}>
            {tasks.map((t, i) => (
              <TaskRow
                task={t}
                selected={i === selected}
                onFocus={() => ((selRef.current = i), setSelected(i))}
                onToggle={() => void toggle(t)}
                onEdit={() => setOpen({ kind: "editor", task: t })}
                onHistory={() => setOpen({ kind: "history", task: t })}
                onDelete={() => remove(t)}
              />
            ))}
          </ul>
          {loaded && tasks.length === 0 && !loading && (
            <p class="empty">{filters.q || pageQuery(filters) ? "No task matches these filters." : "Nothing to do. Add a task above, or press n."}</p>
          )}
          <div ref={sentinel} class="sentinel" />
          {cursor && (
            <button type="button" class="more" disabled={loading} onClick={() => void load(true, cursor)}>
              {loading ? "Loading…" : "Load more tasks"}
            </button>
          )}
        </main>
      </div>

      <div class="toasts" role="status" aria-live="polite">
        {toasts.map((t) => (
          <div class="toast">
            <span>{t.text}</span>
            {t.undo && (
              <button type="button" onClick={() => (dropToast(t.id), t.undo!())}>Undo</button>
            )}
          </div>
        ))}
      </div>

      {open?.kind === "editor" && (
        <Editor
          task={open.task}
          knownTags={knownTags}
          onClose={() => setOpen(null)}
          onSaved={(saved, created) => {
            setOpen(null);
            if (created) setTasks((list) => [saved, ...list]);
            else replace(saved);
            toast(created ? `Added “${saved.title}”.` : `Updated “${saved.title}”.`);
            void refreshTags();
          }}
        />
      )}
      {open?.kind === "history" && <HistoryDialog task={open.task} onClose={() => setOpen(null)} />}
      {open?.kind === "inbox" && (
        <InboxDialog
          items={inbox}
          onClose={() => setOpen(null)}
          onOpen={async (id) => {
            try {
              setOpen({ kind: "editor", task: await api.get(id) });
            } catch (err) {
              setOpen(null);
              if (err instanceof ApiError) setProblem(err.problem);
            }
          }}
        />
      )}
      {open?.kind === "settings" && <SettingsDialog onClose={() => setOpen(null)} />}
      {open?.kind === "help" && <HelpDialog onClose={() => setOpen(null)} />}
    </>
  );
}

function TaskRow(props: {
  task: Task;
  selected: boolean;
  onFocus: () => void;
  onToggle: () => void;
  onEdit: () => void;
  onHistory: () => void;
  onDelete: () => void;
}) {
  const t = props.task;
  const overdue = t.status === "open" && t.due_at !== null && Date.parse(t.due_at) < Date.now();
  return (
    <li id={`task-${t.id}`} tabIndex={-1} aria-current={props.selected ? "true" : undefined} class={`task ${props.selected ? "selected" : ""} ${t.status}`} onFocusCapture={props.onFocus}>
      <input type="checkbox" checked={t.status === "completed"} aria-label={`Complete ${t.title}`} onChange={props.onToggle} />
      <div class="task-main">
        <button type="button" class="title link" onClick={props.onEdit}>
          {t.title}
        </button>
        <div class="meta">
          {t.priority !== "none" && <span class={`prio prio-${t.priority}`}>{t.priority}</span>}
          {t.due_at && (
            <span class={overdue ? "due overdue" : "due"}>
              <time dateTime={t.due_at}>{formatIn(t.due_at, t.timezone)}</time>
              {overdue && " · overdue"}
            </span>
          )}
          {t.recurrence && <span class="repeat-mark">↻ repeats{t.occurrence > 1 ? ` (#${t.occurrence})` : ""}</span>}
          {t.reminders.length > 0 && <span>{t.reminders.length} reminder{t.reminders.length > 1 ? "s" : ""}</span>}
          {t.tags.map((g) => (
            <span class="tag">#{g}</span>
          ))}
        </div>
      </div>
      <div class="row-actions">
        <button type="button" class="icon" onClick={props.onHistory} aria-label={`History of ${t.title}`} title="History">
          ⟲
        </button>
        <button type="button" class="icon danger" onClick={props.onDelete} aria-label={`Delete ${t.title}`} title="Delete">
          <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
            <path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" />
          </svg>
        </button>
      </div>
    </li>
  );
}

const EVENT_NAMES: Record<string, string> = { created: "Created", updated: "Changed", completed: "Completed", reopened: "Reopened", deleted: "Deleted" };

function HistoryDialog({ task, onClose }: { task: Task; onClose: () => void }) {
  const [items, setItems] = useState<HistoryEntry[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    api.history(task.id).then(setItems, (err) => err instanceof ApiError && setProblem(err.problem));
  }, [task.id]);
  const show = (v: unknown) => (v === null || v === undefined || v === "" ? "—" : typeof v === "string" ? v : JSON.stringify(v));
  return (
    <Dialog title={`History of “${task.title}”`} onClose={onClose}>
      <ProblemView problem={problem} />
      {items === null && !problem && <p>Loading…</p>}
      {items && items.length === 0 && <p>No events recorded yet.</p>}
      {items && (
        <ol class="history">
          {items.map((h) => {
            const kind = h.type.split(".").slice(-2, -1)[0] ?? h.type;
            return (
              <li>
                <strong>{EVENT_NAMES[kind] ?? kind}</strong> <time dateTime={h.time}>{formatIn(h.time, task.timezone)}</time> by {h.actor}
                {h.changes && Object.keys(h.changes).length > 0 && (
                  <ul>
                    {Object.entries(h.changes).map(([field, [before, after]]) => (
                      <li>
                        <code>{field}</code>: {show(before)} → {show(after)}
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            );
          })}
        </ol>
      )}
    </Dialog>
  );
}

function InboxDialog({ items, onClose, onOpen }: { items: Notification[]; onClose: () => void; onOpen: (taskId: string) => void }) {
  return (
    <Dialog title="Inbox" onClose={onClose}>
      {items.length === 0 ? (
        <p>No reminders yet. A task's reminders arrive here when they fire.</p>
      ) : (
        <ul class="inbox">
          {items.map((n) => (
            <li>
              <button type="button" class="link title" onClick={() => onOpen(n.task_id)} aria-label={`Open ${n.title}`}>
                {n.title}
              </button>
              <span class="meta">
                {" "}
                reminder set for <time dateTime={n.fire_at}>{formatIn(n.fire_at, Intl.DateTimeFormat().resolvedOptions().timeZone)}</time> ({relative(n.created_at)})
                {n.late && <span class="late"> · late</span>}
              </span>
            </li>
          ))}
        </ul>
      )}
    </Dialog>
  );
}

function SettingsDialog({ onClose }: { onClose: () => void }) {
  const [url, setUrl] = useState("");
  const [current, setCurrent] = useState<string | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  useEffect(() => {
    api.settings().then(
      (s) => (setCurrent(s.webhook_url), setUrl(s.webhook_url ?? ""), setLoaded(true)),
      (err) => err instanceof ApiError && setProblem(err.problem),
    );
  }, []);
  const put = async (value: string | null) => {
    setProblem(null);
    setDone(null);
    try {
      const s = await api.putSettings(value);
      setCurrent(s.webhook_url);
      setUrl(s.webhook_url ?? "");
      setDone(s.webhook_url ? "Webhook updated." : "Webhook removed.");
    } catch (err) {
      if (err instanceof ApiError) setProblem(err.problem);
    }
  };
  return (
    <Dialog title="Settings" onClose={onClose}>
      {!loaded && !problem && <p>Loading…</p>}
      {loaded && <form
        onSubmit={(e) => {
          e.preventDefault();
          void put(url.trim() || null);
        }}
      >
        <div class="field">
          <label for="st-webhook">Webhook URL</label>
          <input id="st-webhook" type="url" value={url} placeholder="https://example.com/hooks/taskflow" aria-describedby="st-help" onInput={(e) => setUrl(e.currentTarget.value)} />
          <p id="st-help" class="hint">Each reminder is also POSTed here as JSON, signed with <code>X-TaskFlow-Signature</code>.</p>
        </div>
        <ProblemView problem={problem} />
        {done && <p role="status">{done}</p>}
        <footer class="dialog-actions">
          {current && (
            <button type="button" onClick={() => void put(null)}>Remove webhook</button>
          )}
          <button type="submit" class="primary">Set webhook</button>
        </footer>
      </form>}
      {!loaded && <ProblemView problem={problem} />}
    </Dialog>
  );
}

function HelpDialog({ onClose }: { onClose: () => void }) {
  const keys: [string, string][] = [
    ["n", "new task"],
    ["/", "search"],
    ["j / k", "next / previous task"],
    ["x", "complete or reopen the selected task"],
    ["e", "edit the selected task"],
    ["?", "this help"],
    ["Esc", "close a dialog"],
  ];
  return (
    <Dialog title="Keyboard shortcuts" onClose={onClose}>
      <dl class="keys">
        {keys.map(([k, what]) => (
          <>
            <dt><kbd>{k}</kbd></dt>
            <dd>{what}</dd>
          </>
        ))}
      </dl>
    </Dialog>
  );
}
