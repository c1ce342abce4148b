// A modal dialog on the native <dialog>: traps Tab inside, closes on Escape, and gives focus back
// to whatever had it before it opened.
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

let counter = 0;

// The last element focused outside any dialog: where focus returns when a dialog closes. (By the
// time a dialog's effect runs, the page behind it is inert and has already lost focus.)
let lastOutside: HTMLElement | null = null;
document.addEventListener("focusin", (e) => {
  const el = e.target as HTMLElement;
  if (!el.closest("dialog")) lastOutside = el;
});

export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  wide?: boolean;
  role?: "dialog" | "alertdialog";
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const id = useRef(`dlg-${++counter}`);
  const close = useRef(props.onClose);
  close.current = props.onClose;

  useEffect(() => {
    const dialog = ref.current!;
    const opener = lastOutside;
    dialog.showModal();
    const first = dialog.querySelector<HTMLElement>("[autofocus], input, select, textarea, button:not(.dialog-x)");
    first?.focus();
    const onCancel = (e: Event) => {
      e.preventDefault();
      close.current();
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Tab") return;
      const items = [...dialog.querySelectorAll<HTMLElement>("a[href], button, input, select, textarea, [tabindex]")].filter(
        (el) => !el.hasAttribute("disabled") && el.tabIndex >= 0 && el.getClientRects().length > 0,
      );
      if (items.length === 0) return;
      const [head, tail] = [items[0], items[items.length - 1]];
      if (e.shiftKey && document.activeElement === head) {
        e.preventDefault();
        tail.focus();
      } else if (!e.shiftKey && document.activeElement === tail) {
        e.preventDefault();
        head.focus();
      }
    };
    dialog.addEventListener("cancel", onCancel);
    dialog.addEventListener("keydown", onKey);
    return () => {
      dialog.removeEventListener("cancel", onCancel);
      dialog.removeEventListener("keydown", onKey);
      if (dialog.open) dialog.close();
      // After this render (the page behind stops being inert), focus goes back to the opener.
      setTimeout(() => (opener && opener.isConnected ? opener : document.getElementById("main-focus"))?.focus(), 0);
    };
  }, []);

  return (
    <dialog ref={ref} class={props.wide ? "wide" : ""} aria-labelledby={id.current} role={props.role}>
      <header class="dialog-head">
        <h2 id={id.current}>{props.title}</h2>
        <button type="button" class="icon dialog-x" aria-label="Close" onClick={() => close.current()}>
          ×
        </button>
      </header>
      {props.children}
    </dialog>
  );
}
