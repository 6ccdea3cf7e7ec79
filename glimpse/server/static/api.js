// An offline reference of the HTTP API, rendered from the app's own OpenAPI schema.
const $ = (id) => document.getElementById(id);

function typeOf(schema, spec) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(s, spec)).join(" | ");
  if (schema.type === "array") return `${typeOf(schema.items, spec)}[]`;
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  return schema.format === "binary" ? "file" : schema.type ?? "any";
}

function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (className) el.className = className;
  return el;
}

function fields(title, rows) {
  if (!rows.length) return null;
  const box = element("div");
  box.append(element("h4", title));
  const list = element("ul");
  for (const [name, type, note] of rows) {
    const li = element("li");
    li.append(element("code", name), ` ${type}${note ? ` — ${note}` : ""}`);
    list.append(li);
  }
  box.append(list);
  return box;
}

function bodyRows(content, spec) {
  const rows = [];
  for (const [mediaType, { schema }] of Object.entries(content ?? {})) {
    const resolved = schema?.$ref ? spec.components.schemas[schema.$ref.split("/").pop()] : schema;
    rows.push([mediaType, typeOf(schema, spec), ""]);
    for (const [name, prop] of Object.entries(resolved?.properties ?? {})) {
      rows.push([`  ${name}`, typeOf(prop, spec), prop.description ?? ""]);
    }
  }
  return rows;
}

async function main() {
  const response = await fetch("/openapi.json");
  if (!response.ok) throw new Error(`cannot load /openapi.json (${response.status})`);
  const spec = await response.json();
  const out = $("operations");
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const section = element("section", undefined, "operation");
      const head = element("h3");
      head.append(element("code", method.toUpperCase()), " ", element("code", path));
      section.append(head, element("p", op.description ?? op.summary ?? ""));
      if (op.security) section.append(element("p", "Needs the write token: Authorization: Bearer <token>."));
      const parameters = (op.parameters ?? []).map((p) => [p.name, `${typeOf(p.schema, spec)} (${p.in}${p.required ? ", required" : ""})`, p.description ?? ""]);
      for (const part of [fields("Parameters", parameters), fields("Body", bodyRows(op.requestBody?.content, spec)),
        fields("Answers", Object.entries(op.responses).map(([code, r]) => [code, r.description, ""]))]) {
        if (part) section.append(part);
      }
      out.append(section);
    }
  }
}

main().catch((err) => {
  $("error").textContent = err.message;
  $("error").hidden = false;
});
