// Forms generated from a JSON Schema object (ServerConfig, BenchConfig, fetched from the
// service's OpenAPI document at run time): one field per property, in the schema's order.
//
// Each property's schema is flattened into its alternatives (anyOf/oneOf, nested), and
// "not set" alternatives (null, a blank string) make the field optional. Then:
//   - scalars only (integer, number, string, boolean, enum): one control, a <select>
//     when every value is listed, else a text or number input with suggestions;
//   - a scalar or an array of the same scalars (a llama-bench sweep): a list of values,
//     sent as the value itself when there is one, as an array when there are several;
//   - an array of scalars: a list of values, always sent as an array;
//   - an object with additionalProperties: key/value rows;
//   - anything else: JSON text.
// The service stays the one judge of validity: the form sends what the user typed,
// typed as the schema suggests, and shows the service's 422 errors at their fields.

import { h, uid } from "./dom.js";

const isBlank = (leaf) => leaf.type === "string" && leaf.pattern === "^\\s*$";
const SCALARS = new Set(["integer", "number", "string", "boolean"]);

/** The alternatives of a schema, nested unions flattened, "not set" ones dropped. */
export function flatten(schema) {
  const leaves = [];
  let optional = false;
  let description = null;
  const walk = (node) => {
    if (!node || typeof node !== "object") return;
    if (node.description && !isBlank(node) && description === null) description = node.description;
    const union = node.anyOf || node.oneOf;
    if (union) {
      union.forEach(walk);
      return;
    }
    if (node.type === "null" || isBlank(node)) {
      optional = true;
      return;
    }
    if (Array.isArray(node.type)) {
      for (const type of node.type) walk({ ...node, type });
      return;
    }
    leaves.push(node);
  };
  walk(schema);
  return { leaves, optional, description };
}

const isScalar = (leaf) => Array.isArray(leaf.enum) || SCALARS.has(leaf.type);
const signature = (leaf) => JSON.stringify({ ...leaf, description: undefined });

// "^\s*(f32|f16|q8_0)\s*$" lists its values: show them as choices.
const LITERALS = /^\^(?:\\s\*)?\(((?:[A-Za-z0-9_.\-]|\\\+)+(?:\|(?:[A-Za-z0-9_.\-]|\\\+)+)*)\)(?:\\s\*)?\$$/;

/** What a scalar union accepts. */
export function scalarModel(leaves) {
  const model = { choices: [], boolean: false, integer: null, number: null, freeText: null };
  const addChoice = (value) => {
    if (!model.choices.some((c) => c === value)) model.choices.push(value);
  };
  for (const leaf of leaves) {
    if (Array.isArray(leaf.enum)) leaf.enum.forEach(addChoice);
    else if (leaf.type === "boolean") model.boolean = true;
    else if (leaf.type === "integer") model.integer = { min: leaf.minimum, max: leaf.maximum };
    else if (leaf.type === "number") model.number = { min: leaf.minimum, max: leaf.maximum };
    else if (leaf.type === "string") {
      const literals = leaf.pattern && LITERALS.exec(leaf.pattern);
      if (literals) literals[1].split("|").map((v) => v.replace(/\\\+/g, "+")).forEach(addChoice);
      else model.freeText = { pattern: leaf.pattern || null, minLength: leaf.minLength };
    }
  }
  // 0 and 1 beside a boolean are its spellings, not further choices.
  if (model.boolean) model.choices = model.choices.filter((c) => c !== 0 && c !== 1);
  return model;
}

/** Classify one property: {kind, model, sweep, optional, description}. */
export function analyse(schema) {
  const { leaves, optional, description } = flatten(schema);
  const scalars = leaves.filter(isScalar);
  const arrays = leaves.filter((l) => l.type === "array");
  const objects = leaves.filter((l) => l.type === "object");
  const others = leaves.length - scalars.length - arrays.length - objects.length;
  const base = { optional, description };
  if (!others && !objects.length && scalars.length) {
    const mine = new Set(scalars.map(signature));
    const sweep = arrays.some((array) => {
      const items = flatten(array.items || {}).leaves.filter(isScalar).map(signature);
      return items.length === mine.size && items.every((s) => mine.has(s));
    });
    if (sweep) return { ...base, kind: "list", sweep: true, model: scalarModel(scalars) };
    const textCovers = scalars.some((l) => l.type === "string");
    if (!arrays.length || textCovers) return { ...base, kind: "scalar", model: scalarModel(scalars) };
  }
  if (!others && !objects.length && !scalars.length && arrays.length === 1) {
    const items = flatten(arrays[0].items || {}).leaves;
    if (items.length && items.every(isScalar)) {
      return { ...base, kind: "list", sweep: false, model: scalarModel(items) };
    }
  }
  if (!others && !arrays.length && !scalars.length && objects.length === 1) {
    const extra = objects[0].additionalProperties;
    const items = extra && typeof extra === "object" ? flatten(extra).leaves : [];
    if (items.length && items.every(isScalar) && !objects[0].properties) {
      return { ...base, kind: "map", model: scalarModel(items) };
    }
  }
  return { ...base, kind: "json" };
}

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** Type what was typed as the model suggests; undefined for "not set". */
export function parseScalar(model, text) {
  const raw = String(text ?? "");
  const value = raw.trim();
  if (value === "") return undefined;
  for (const choice of model.choices) {
    if (String(choice) === value) return choice;
  }
  if (model.boolean && (value === "true" || value === "false")) return value === "true";
  if ((model.integer || model.number) && NUMBER.test(value)) {
    const number = Number(value);
    if (model.integer && !model.number && !Number.isInteger(number) && model.freeText) return raw;
    return number;
  }
  return model.freeText ? raw : value;
}

function describedBy(...ids) {
  return ids.filter(Boolean).join(" ") || undefined;
}

/** One scalar control (select, or input with suggestions). */
function scalarControl(model, { id, label, describedIds, optional }) {
  const closed = !model.integer && !model.number && !model.freeText;
  if (closed) {
    const values = [...(model.boolean ? [true, false] : []), ...model.choices];
    const select = h("select", { id, "aria-label": label, "aria-describedby": describedBy(...describedIds) });
    select.append(h("option", { value: "", text: optional ? "— not set —" : "—" }));
    values.forEach((v, i) => select.append(h("option", { value: String(i), text: String(v) })));
    return {
      element: select,
      focusable: select,
      read: () => (select.value === "" ? undefined : values[Number(select.value)]),
      write: (v) => {
        const i = values.findIndex((x) => x === v || String(x) === String(v));
        select.value = i < 0 ? "" : String(i);
      },
    };
  }
  const numeric = (model.integer || model.number) && !model.freeText && !model.choices.length && !model.boolean;
  const range = model.integer || model.number || {};
  const input = h("input", {
    id,
    type: "text",
    inputmode: numeric ? (model.number ? "decimal" : "numeric") : undefined,
    autocomplete: "off",
    "aria-label": label,
    "aria-describedby": describedBy(...describedIds),
    placeholder: placeholderFor(model, range),
  });
  const suggestions = [...(model.boolean ? ["true", "false"] : []), ...model.choices.map(String)];
  let list = null;
  if (suggestions.length) {
    list = h("datalist", { id: `${id}-choices` }, suggestions.map((s) => h("option", { value: s })));
    input.setAttribute("list", list.id);
  }
  return {
    element: list ? h("span", { class: "with-list" }, input, list) : input,
    focusable: input,
    read: () => parseScalar(model, input.value),
    write: (v) => { input.value = v === undefined || v === null ? "" : String(v); },
  };
}

function placeholderFor(model, range) {
  const parts = [];
  if (model.integer || model.number) {
    const kind = model.integer ? "whole number" : "number";
    if (range.min !== undefined && range.max !== undefined && range.max < 1e9) parts.push(`${kind} ${range.min}–${range.max}`);
    else if (range.min !== undefined) parts.push(`${kind} ≥ ${range.min}`);
    else parts.push(kind);
  }
  if (model.boolean) parts.push("true/false");
  if (model.choices.length) parts.push(model.choices.slice(0, 4).join("/") + (model.choices.length > 4 ? "/…" : ""));
  if (model.freeText && !parts.length) parts.push("text");
  return parts.join(" or ");
}

/** A field: label, control(s), help, error slot. */
function buildField(name, schema, idPrefix) {
  const info = analyse(schema);
  const id = `${idPrefix}-${name}`;
  const helpId = info.description ? `${id}-help` : null;
  const errorId = `${id}-error`;
  const help = info.description ? h("p", { class: "help", id: helpId, text: info.description }) : null;
  const error = h("p", { class: "field-error", id: errorId });
  const ids = [helpId, errorId];

  if (info.kind === "scalar") {
    const control = scalarControl(info.model, { id, label: undefined, describedIds: ids, optional: info.optional });
    const wrap = h("div", { class: "field", dataset: { field: name, kind: "scalar" } },
      h("label", { for: id, text: name }), control.element, help, error);
    return { name, info, element: wrap, error, read: control.read, write: control.write,
      focusables: () => [control.focusable] };
  }

  if (info.kind === "list") {
    const rows = h("div", { class: "list-rows" });
    const controls = [];
    const legend = h("legend", {}, name, info.sweep ? h("span", { class: "tag", text: "sweep" }) : null);
    const addRow = (value) => {
      const n = controls.length + 1;
      const control = scalarControl(info.model, {
        id: `${id}-${uid("v")}`, label: `${name} value ${n}`, describedIds: ids, optional: true,
      });
      const remove = h("button", { type: "button", class: "small", text: "Remove",
        "aria-label": `Remove ${name} value ${n}` });
      const row = h("div", { class: "list-row" }, control.element, remove);
      remove.addEventListener("click", () => {
        controls.splice(controls.indexOf(control), 1);
        row.remove();
        if (!controls.length) addRow();
        syncRemove();
      });
      controls.push(control);
      control.remove = remove;
      rows.append(row);
      syncRemove();
      if (value !== undefined) control.write(value);
      return control;
    };
    // A lone value needs no Remove: clearing it says "not set".
    const syncRemove = () => controls.forEach((c) => { c.remove.hidden = controls.length < 2; });
    addRow();
    const add = h("button", { type: "button", class: "small", text: "+ value",
      "aria-label": `Add a ${name} value`, on: { click: () => addRow().focusable.focus() } });
    const wrap = h("fieldset", { class: "field", dataset: { field: name, kind: info.sweep ? "sweep" : "list" } },
      legend, rows, h("div", {}, add), help, error);
    const read = () => {
      const values = controls.map((c) => c.read()).filter((v) => v !== undefined);
      if (!values.length) return undefined;
      return info.sweep && values.length === 1 ? values[0] : values;
    };
    const write = (value) => {
      controls.splice(0).forEach(() => {});
      rows.replaceChildren();
      const values = value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
      if (!values.length) addRow();
      values.forEach((v) => addRow(v));
    };
    return { name, info, element: wrap, error, read, write,
      focusables: () => controls.map((c) => c.focusable) };
  }

  if (info.kind === "map") {
    const rows = h("div", { class: "list-rows" });
    const pairs = [];
    const addPair = (key = "", value = "") => {
      const n = pairs.length + 1;
      const keyInput = h("input", { type: "text", "aria-label": `${name} name ${n}`, placeholder: "name", value: key,
        autocomplete: "off", "aria-describedby": describedBy(...ids) });
      const valueControl = scalarControl(info.model, { id: `${id}-${uid("v")}`, label: `${name} value ${n}`,
        describedIds: ids, optional: true });
      valueControl.write(value);
      const remove = h("button", { type: "button", class: "small", text: "Remove", "aria-label": `Remove ${name} ${n}` });
      const row = h("div", { class: "list-row" }, keyInput, valueControl.element, remove);
      const pair = { keyInput, valueControl };
      remove.addEventListener("click", () => { pairs.splice(pairs.indexOf(pair), 1); row.remove(); });
      pairs.push(pair);
      rows.append(row);
      return keyInput;
    };
    const add = h("button", { type: "button", class: "small", text: "Add entry", "aria-label": `Add a ${name} entry`,
      on: { click: () => addPair().focus() } });
    const wrap = h("fieldset", { class: "field", dataset: { field: name, kind: "map" } },
      h("legend", { text: name }), rows, h("div", {}, add), help, error);
    const read = () => {
      const out = {};
      for (const { keyInput, valueControl } of pairs) {
        const value = valueControl.read();
        if (keyInput.value.trim() !== "") out[keyInput.value.trim()] = value === undefined ? "" : value;
      }
      return Object.keys(out).length ? out : undefined;
    };
    const write = (value) => {
      pairs.splice(0);
      rows.replaceChildren();
      for (const [k, v] of Object.entries(value || {})) addPair(k, v);
    };
    return { name, info, element: wrap, error, read, write,
      focusables: () => pairs.map((p) => p.keyInput) };
  }

  const area = h("textarea", { id, rows: 2, spellcheck: "false", placeholder: "JSON",
    "aria-describedby": describedBy(...ids) });
  const wrap = h("div", { class: "field", dataset: { field: name, kind: "json" } },
    h("label", { for: id, text: `${name} (JSON)` }), area, help, error);
  const read = () => {
    if (!area.value.trim()) return undefined;
    try { return JSON.parse(area.value); } catch { throw new FieldProblem(name, "is not valid JSON"); }
  };
  return { name, info, element: wrap, error, read,
    write: (v) => { area.value = v === undefined ? "" : JSON.stringify(v); }, focusables: () => [area] };
}

/** A field whose text cannot be read (JSON that does not parse). */
export class FieldProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/**
 * A form for an object schema. `primary`: property names shown first; the rest go into
 * a collapsed "More settings". Returns {element, fields, read(), showErrors(map),
 * clearErrors(), setValues(obj)}.
 */
export function schemaForm(schema, { idPrefix = uid("form"), primary = [], moreLabel = "More settings", collapse = true } = {}) {
  const properties = schema && schema.properties ? schema.properties : {};
  const names = Object.keys(properties);
  const first = collapse ? primary.filter((n) => names.includes(n)) : names;
  const rest = names.filter((n) => !first.includes(n));
  const fields = new Map(names.map((n) => [n, buildField(n, properties[n], idPrefix)]));
  const element = h("div", { class: "schema-form" });
  const grid = (list) => h("div", { class: "fields" }, list.map((n) => fields.get(n).element));
  if (first.length) element.append(grid(first));
  let more = null;
  if (rest.length) {
    more = h("details", {}, h("summary", { text: `${first.length ? moreLabel : "Settings"} (${rest.length})` }), grid(rest));
    if (!first.length) more.open = true;
    element.append(more);
  }

  const clearErrors = () => {
    for (const field of fields.values()) {
      field.error.textContent = "";
      field.element.classList.remove("invalid");
      for (const f of field.focusables()) f.removeAttribute("aria-invalid");
    }
  };

  return {
    element,
    fields,
    /** The object to send: only the fields that are set. Throws FieldProblem. */
    read() {
      const out = {};
      for (const [name, field] of fields) {
        const value = field.read();
        if (value !== undefined) out[name] = value;
      }
      return out;
    },
    /** Show `map` (name -> [reasons]) at the fields; returns the names it has no field for. */
    showErrors(map) {
      clearErrors();
      const unplaced = [];
      let firstInvalid = null;
      for (const [name, reasons] of map) {
        const field = fields.get(name);
        if (!field) { unplaced.push(name); continue; }
        field.error.textContent = reasons.join("; ");
        field.element.classList.add("invalid");
        for (const f of field.focusables()) f.setAttribute("aria-invalid", "true");
        if (more && more.contains(field.element)) more.open = true;
        firstInvalid = firstInvalid || field.focusables()[0];
      }
      return { unplaced, firstInvalid };
    },
    clearErrors,
    setValues(values) {
      for (const [name, value] of Object.entries(values || {})) fields.get(name)?.write(value);
    },
  };
}
