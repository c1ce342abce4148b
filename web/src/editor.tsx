// The full task editor: every field of a task, reminders, and a recurrence editor whose next
// occurrences come from the server.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, PRIORITIES, type Preview, type Priority, type Problem, type Reminder, type Task, type TaskFields } from "./api";
import { Dialog } from "./dialog";
import { ProblemView } from "./problem";
import { dayFacts, fromRule, ordinalName, toRule, WEEKDAY_NAMES, WEEKDAYS, type RepeatForm } from "./repeat";
import { browserZone, describeOffset, formatIn, utcToZoned, zonedToUtc, zones } from "./time";

const PRESETS: [string, string][] = [
  ["PT0S", "At the scheduled time"],
  ["-PT5M", "5 minutes before"],
  ["-PT15M", "15 minutes before"],
  ["-PT30M", "30 minutes before"],
  ["-PT1H", "1 hour before"],
  ["-P1D", "1 day before"],
];
const UNITS: Record<string, [string, string]> = {
  minutes: ["T", "M"],
  hours: ["T", "H"],
  days: ["", "D"],
  weeks: ["", "W"],
};

interface Props {
  task: Task | null;
  knownTags: string[];
  onSaved: (task: Task, created: boolean) => void;
  onClose: () => void;
}

interface State {
  title: string;
  description: string;
  priority: Priority;
  tags: string[];
  due: string;
  timezone: string;
  repeat: RepeatForm;
  reminders: Reminder[];
}

function stateOf(task: Task | null): State {
  const tz = task?.timezone ?? browserZone();
  return {
    title: task?.title ?? "",
    description: task?.description ?? "",
    priority: task?.priority ?? "none",
    tags: task?.tags ?? [],
    due: task?.due_at ? utcToZoned(task.due_at, tz) : "",
    timezone: tz,
    repeat: fromRule(task?.recurrence?.rule, task?.recurrence?.anchor),
    reminders: task?.reminders ?? [],
  };
}

const splitTags = (text: string): string[] =>
  text
    .split(/[,\s]+/)
    .map((t) => t.replace(/^#/, "").trim().toLowerCase())
    .filter(Boolean);

export function Editor({ task: initial, knownTags, onSaved, onClose }: Props) {
  const [base, setBase] = useState<Task | null>(initial);
  const [s, setS] = useState<State>(() => stateOf(initial));
  const [tagText, setTagText] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [conflict, setConflict] = useState(false);
  const [saving, setSaving] = useState(false);
  const [preview, setPreview] = useState<Preview | null>(null);
  const [previewProblem, setPreviewProblem] = useState<Problem | null>(null);
  const [customAmount, setCustomAmount] = useState(10);
  const [customUnit, setCustomUnit] = useState("minutes");
  const [customDir, setCustomDir] = useState("before");
  const [absolute, setAbsolute] = useState("");
  const allZones = useMemo(zones, []);
  const set = <K extends keyof State>(k: K, v: State[K]) => setS((old) => ({ ...old, [k]: v }));
  const setRepeat = (patch: Partial<RepeatForm>) => setS((old) => ({ ...old, repeat: { ...old.repeat, ...patch } }));

  const rule = toRule(s.repeat, s.due);
  const facts = dayFacts(s.due);

  // The server's preview of the rule, refreshed (debounced) while the user edits it.
  const seq = useRef(0);
  useEffect(() => {
    setPreviewProblem(null);
    if (!rule || !s.due) {
      setPreview(null);
      return;
    }
    const mine = ++seq.current;
    const timer = setTimeout(async () => {
      try {
        const due_at = zonedToUtc(s.due, s.timezone);
        const p = await api.preview({ rule, anchor: s.repeat.anchor, due_at, timezone: s.timezone });
        if (mine === seq.current) setPreview(p);
      } catch (err) {
        if (mine === seq.current && err instanceof ApiError) {
          setPreview(null);
          setPreviewProblem(err.problem);
        }
      }
    }, 250);
    return () => clearTimeout(timer);
  }, [rule, s.due, s.timezone, s.repeat.anchor]);

  const fieldError = (...names: string[]) =>
    problem?.errors?.filter((e) => names.some((n) => e.field === n || e.field.startsWith(`${n}.`))).map((e) => e.message).join("; ");

  const addTags = (text: string) => {
    const more = splitTags(text);
    if (more.length) set("tags", [...new Set([...s.tags, ...more])]);
    setTagText("");
  };

  const fields = (): TaskFields => {
    const due_at = s.due ? zonedToUtc(s.due, s.timezone) : null;
    return {
      title: s.title,
      description: s.description,
      priority: s.priority,
      tags: [...new Set([...s.tags, ...splitTags(tagText)])],
      due_at,
      timezone: s.timezone,
      recurrence: rule ? { rule, anchor: s.repeat.anchor } : null,
      reminders: s.reminders,
    };
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setSaving(true);
    setProblem(null);
    try {
      const saved = base ? await api.update(base, fields()) : await api.create(fields());
      onSaved(saved, !base);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 412) setConflict(true);
      else setProblem(err.problem);
    } finally {
      setSaving(false);
    }
  };

  const reload = async () => {
    if (!base) return;
    try {
      const fresh = await api.get(base.id);
      setBase(fresh);
      setS(stateOf(fresh));
      setTagText("");
      setConflict(false);
      setProblem(null);
    } catch (err) {
      if (err instanceof ApiError) setProblem(err.problem);
    }
  };

  const addPreset = (value: string) => {
    if (!value) return;
    if (!s.reminders.some((r) => r.offset === value)) set("reminders", [...s.reminders, { offset: value }]);
  };
  const addCustom = () => {
    const [t, u] = UNITS[customUnit];
    const sign = customDir === "before" ? "-" : "";
    set("reminders", [...s.reminders, { offset: `${sign}P${t}${customAmount}${u}` }]);
  };
  const addAbsolute = () => {
    if (!absolute) return;
    set("reminders", [...s.reminders, { at: zonedToUtc(absolute, s.timezone) }]);
    setAbsolute("");
  };
  const describe = (r: Reminder) => (r.offset ? describeOffset(r.offset) : `on ${formatIn(r.at!, s.timezone)}`);

  const toggleDay = (d: string, on: boolean) =>
    setRepeat({ weekdays: on ? [...s.repeat.weekdays, d] : s.repeat.weekdays.filter((x) => x !== d) });

  return (
    <Dialog title={base ? "Edit task" : "New task"} onClose={onClose} wide>
      <form class="editor" onSubmit={save} noValidate>
        {conflict && (
          <div class="conflict" role="alert">
            <p>
              <strong>This task changed since you opened it</strong> (in another tab, on another device, or by a
              reminder or recurrence). Your edits were not saved, so nothing was overwritten.
            </p>
            <button type="button" onClick={reload}>
              Reload task
            </button>
          </div>
        )}
        <ProblemView problem={problem} />
        <div class="field">
          <label for="ed-title">Title</label>
          <input id="ed-title" value={s.title} required maxLength={200} autofocus aria-invalid={!!fieldError("title")}
            aria-describedby={fieldError("title") ? "err-title" : undefined} onInput={(e) => set("title", e.currentTarget.value)} />
          {fieldError("title") && <p id="err-title" class="field-error">{fieldError("title")}</p>}
        </div>
        <div class="field">
          <label for="ed-desc">Description</label>
          <textarea id="ed-desc" rows={3} value={s.description} onInput={(e) => set("description", e.currentTarget.value)} />
        </div>
        <div class="row2">
          <div class="field">
            <label for="ed-priority">Priority</label>
            <select id="ed-priority" value={s.priority} onChange={(e) => set("priority", e.currentTarget.value as Priority)}>
              {PRIORITIES.map((p) => (
                <option value={p}>{p === "none" ? "None" : p[0].toUpperCase() + p.slice(1)}</option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="ed-tags">Tags</label>
            <input id="ed-tags" list="tag-suggestions" value={tagText} autocomplete="off" placeholder="work, home"
              aria-describedby="ed-tags-help" aria-invalid={!!fieldError("tags")}
              onInput={(e) => {
                const v = e.currentTarget.value;
                if (/[,\s]$/.test(v) || knownTags.includes(v)) addTags(v);
                else setTagText(v);
              }}
              onKeyDown={(e) => {
                if (e.key === "Enter" && tagText.trim()) {
                  e.preventDefault();
                  addTags(tagText);
                } else if (e.key === "Backspace" && !tagText && s.tags.length) set("tags", s.tags.slice(0, -1));
              }} />
            <datalist id="tag-suggestions">
              {knownTags.filter((t) => !s.tags.includes(t)).map((t) => <option value={t} />)}
            </datalist>
            <p id="ed-tags-help" class="hint">Comma or Enter adds a tag.</p>
            {s.tags.length > 0 && (
              <ul class="chips" aria-label="Chosen tag list">
                {s.tags.map((t) => (
                  <li>
                    #{t}
                    <button type="button" class="icon" aria-label={`Remove tag ${t}`} onClick={() => set("tags", s.tags.filter((x) => x !== t))}>
                      ×
                    </button>
                  </li>
                ))}
              </ul>
            )}
            {fieldError("tags") && <p class="field-error">{fieldError("tags")}</p>}
          </div>
        </div>
        <div class="row2">
          <div class="field">
            <label for="ed-due">Due</label>
            <input id="ed-due" type="datetime-local" value={s.due} aria-invalid={!!fieldError("due_at")} onInput={(e) => set("due", e.currentTarget.value)} />
            {fieldError("due_at") && <p class="field-error">{fieldError("due_at")}</p>}
          </div>
          <div class="field">
            <label for="ed-tz">Time zone</label>
            <select id="ed-tz" value={s.timezone} onChange={(e) => set("timezone", e.currentTarget.value)}>
              {allZones.map((z) => (
                <option value={z}>{z}</option>
              ))}
            </select>
          </div>
        </div>

        <fieldset class="repeat">
          <legend>Recurrence</legend>
          <div class="row2">
            <div class="field">
              <label for="ed-repeat">Repeat</label>
              <select id="ed-repeat" value={s.repeat.kind} onChange={(e) => setRepeat({ kind: e.currentTarget.value as RepeatForm["kind"] })}>
                <option value="never">Does not repeat</option>
                <option value="daily">Daily</option>
                <option value="weekly">Weekly</option>
                <option value="monthly">Monthly</option>
                <option value="yearly">Yearly</option>
                <option value="custom">Custom rule</option>
              </select>
            </div>
            {s.repeat.kind !== "never" && s.repeat.kind !== "custom" && (
              <div class="field">
                <label for="ed-interval">Every (number of {s.repeat.kind === "daily" ? "days" : s.repeat.kind.replace("ly", "s")})</label>
                <input id="ed-interval" type="number" min={1} max={999} value={s.repeat.interval}
                  onInput={(e) => setRepeat({ interval: Math.max(1, Number(e.currentTarget.value) || 1) })} />
              </div>
            )}
          </div>
          {s.repeat.kind === "custom" && (
            <div class="field">
              <label for="ed-rule">Rule (RFC 5545 RRULE)</label>
              <input id="ed-rule" value={s.repeat.custom} placeholder="FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"
                onInput={(e) => setRepeat({ custom: e.currentTarget.value })} />
            </div>
          )}
          {s.repeat.kind === "weekly" && (
            <fieldset class="days">
              <legend>On days</legend>
              {WEEKDAYS.map((d, i) => (
                <label class="day">
                  <input type="checkbox" checked={s.repeat.weekdays.includes(d)} onChange={(e) => toggleDay(d, e.currentTarget.checked)} />
                  <span>{WEEKDAY_NAMES[i].slice(0, 3)}</span>
                </label>
              ))}
            </fieldset>
          )}
          {s.repeat.kind === "monthly" && (
            <fieldset class="inline">
              <legend>Each month on</legend>
              <label>
                <input type="radio" name="monthly" checked={s.repeat.monthlyBy === "day"} onChange={() => setRepeat({ monthlyBy: "day" })} />
                {facts ? ` day ${facts.day}` : " the same day of the month"}
              </label>
              <label>
                <input type="radio" name="monthly" checked={s.repeat.monthlyBy === "weekday"} onChange={() => setRepeat({ monthlyBy: "weekday" })} />
                {facts ? ` the ${ordinalName(facts.ordinal)} ${WEEKDAY_NAMES[facts.weekday]}` : " the same weekday"}
              </label>
            </fieldset>
          )}
          {s.repeat.kind !== "never" && s.repeat.kind !== "custom" && (
            <div class="row2">
              <div class="field">
                <label for="ed-ends">Ends</label>
                <select id="ed-ends" value={s.repeat.ends} onChange={(e) => setRepeat({ ends: e.currentTarget.value as RepeatForm["ends"] })}>
                  <option value="never">Never</option>
                  <option value="count">After a number of times</option>
                  <option value="until">On a date</option>
                </select>
              </div>
              {s.repeat.ends === "count" && (
                <div class="field">
                  <label for="ed-count">Number of times</label>
                  <input id="ed-count" type="number" min={1} max={1000} value={s.repeat.count}
                    onInput={(e) => setRepeat({ count: Math.max(1, Number(e.currentTarget.value) || 1) })} />
                </div>
              )}
              {s.repeat.ends === "until" && (
                <div class="field">
                  <label for="ed-until">Last date</label>
                  <input id="ed-until" type="date" value={s.repeat.until} onInput={(e) => setRepeat({ until: e.currentTarget.value })} />
                </div>
              )}
            </div>
          )}
          {s.repeat.kind !== "never" && (
            <fieldset class="inline">
              <legend>Next one counts from</legend>
              <label>
                <input type="radio" name="anchor" checked={s.repeat.anchor === "due"} onChange={() => setRepeat({ anchor: "due" })} /> the scheduled date
              </label>
              <label>
                <input type="radio" name="anchor" checked={s.repeat.anchor === "completion"} onChange={() => setRepeat({ anchor: "completion" })} /> the completion date
              </label>
            </fieldset>
          )}
          {s.repeat.kind !== "never" && (
            <section class="preview" aria-live="polite" aria-labelledby="preview-head">
              <h3 id="preview-head">Next occurrences</h3>
              {!s.due && <p class="hint">Set a due date and time to see when it repeats.</p>}
              {previewProblem && <ProblemView problem={previewProblem} />}
              {preview && preview.occurrences.length === 0 && <p>No more occurrences: the series ends here.</p>}
              {preview && preview.occurrences.length > 0 && (
                <ol>
                  {preview.occurrences.map((o) => (
                    <li>
                      <time dateTime={o}>{formatIn(o, s.timezone)}</time>
                    </li>
                  ))}
                </ol>
              )}
              {rule && <p class="hint">Rule: <code>{rule}</code></p>}
            </section>
          )}
          {fieldError("recurrence") && <p class="field-error">{fieldError("recurrence")}</p>}
        </fieldset>

        <fieldset class="reminders" aria-label="Reminders">
          <legend>Reminders</legend>
          {s.reminders.length === 0 ? (
            <p class="hint">No reminders.</p>
          ) : (
            <ul class="reminder-list">
              {s.reminders.map((r, i) => (
                <li>
                  {describe(r)}
                  <button type="button" class="icon" aria-label={`Remove reminder ${describe(r)}`}
                    onClick={() => set("reminders", s.reminders.filter((_, j) => j !== i))}>
                    ×
                  </button>
                </li>
              ))}
            </ul>
          )}
          <div class="row3">
            <div class="field">
              <label for="ed-rem-preset">Add a reminder</label>
              <select id="ed-rem-preset" value="" onChange={(e) => { addPreset(e.currentTarget.value); e.currentTarget.value = ""; }}>
                <option value="">Choose…</option>
                {PRESETS.map(([v, text]) => (
                  <option value={v}>{text}</option>
                ))}
              </select>
            </div>
            <div class="field custom-offset">
              <span id="custom-offset-label" class="label">Custom offset</span>
              <div class="inline-controls" role="group" aria-labelledby="custom-offset-label">
                <input type="number" min={0} max={10000} value={customAmount} aria-label="Amount" onInput={(e) => setCustomAmount(Number(e.currentTarget.value) || 0)} />
                <select value={customUnit} aria-label="Unit" onChange={(e) => setCustomUnit(e.currentTarget.value)}>
                  {Object.keys(UNITS).map((u) => <option value={u}>{u}</option>)}
                </select>
                <select value={customDir} aria-label="Before or after" onChange={(e) => setCustomDir(e.currentTarget.value)}>
                  <option value="before">before</option>
                  <option value="after">after</option>
                </select>
                <button type="button" onClick={addCustom}>Add offset</button>
              </div>
            </div>
            <div class="field">
              <label for="ed-rem-at">Remind at a date and time</label>
              <div class="inline-controls">
                <input id="ed-rem-at" type="datetime-local" step={1} value={absolute} onInput={(e) => setAbsolute(e.currentTarget.value)} />
                <button type="button" onClick={addAbsolute}>Add time</button>
              </div>
            </div>
          </div>
          {fieldError("reminders") && <p class="field-error">{fieldError("reminders")}</p>}
        </fieldset>

        <footer class="dialog-actions">
          <button type="button" onClick={onClose}>Cancel</button>
          <button type="submit" class="primary" disabled={saving}>Save</button>
        </footer>
      </form>
    </Dialog>
  );
}
