// The notebook cell editor: CodeMirror 6 with Python and SQL highlighting.
import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { Prec } from "@codemirror/state";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { sql } from "@codemirror/lang-sql";

// createEditor(parent, { doc, language: "python" | "sql", onRun, label }) →
// { getValue(), setValue(text), focus() }. Shift/Ctrl+Enter runs the cell;
// Tab indents (Escape then Tab leaves the editor, as CodeMirror documents).
// `nonce` is the page's CSP nonce: CodeMirror's styles go in a <style> element.
export function createEditor(parent, { doc = "", language = "python", onRun = () => {}, label = "Cell source", nonce = "" } = {}) {
  const run = () => {
    onRun();
    return true;
  };
  const view = new EditorView({
    doc,
    parent,
    extensions: [
      basicSetup,
      Prec.highest(keymap.of([{ key: "Shift-Enter", run }, { key: "Mod-Enter", run }])),
      keymap.of([indentWithTab]),
      language === "sql" ? sql() : python(),
      EditorView.contentAttributes.of({ "aria-label": label }),
      EditorView.cspNonce.of(nonce),
    ],
  });
  return {
    getValue: () => view.state.doc.toString(),
    setValue: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    focus: () => view.focus(),
  };
}
