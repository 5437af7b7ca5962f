import { Hono } from 'hono';
import { ADMIN_BASE } from '../auth';

/**
 * A page that renders the OpenAPI document, drawn on the server from the same document as
 * /openapi.json: no script, no CDN, nothing fetched by the browser, so it works on a machine with
 * no internet and under the API's strict content security policy.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

export function docsRoutes(document: () => object): Hono {
  return new Hono()
    .get('/', (c) => c.html(renderApiReference(document() as JsonObject)))
    .get('/openapi.json', (c) => c.json(document()));
}

const escape = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const obj = (v: Json | undefined): JsonObject => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
const arr = (v: Json | undefined): Json[] => (Array.isArray(v) ? v : []);
const str = (v: Json | undefined): string => (typeof v === 'string' ? v : '');
const anchor = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '-');

/** A schema as a short type expression: `{ id: number, name?: string }`, refs as links. */
function schemaText(schema: Json | undefined, depth = 0): string {
  const s = obj(schema);
  const ref = str(s.$ref);
  if (ref) {
    const name = ref.split('/').pop() ?? ref;
    return `<a href="#schema-${anchor(name)}">${escape(name)}</a>`;
  }
  const nullable = arr(s.type).includes('null') || s.nullable === true ? ' | null' : '';
  if (s.enum) return arr(s.enum).map((v) => escape(JSON.stringify(v))).join(' | ') + nullable;
  if (s.const !== undefined) return escape(JSON.stringify(s.const));
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    if (s[key]) return arr(s[key]).map((part) => schemaText(part, depth)).join(key === 'allOf' ? ' &amp; ' : ' | ');
  }
  const type = Array.isArray(s.type) ? str(s.type.find((t) => t !== 'null')) : str(s.type);
  if (type === 'array') return `${schemaText(s.items, depth)}[]${nullable}`;
  if (type === 'object' || s.properties) {
    const required = arr(s.required).map(str);
    const props = Object.entries(obj(s.properties));
    const extra = s.additionalProperties && typeof s.additionalProperties === 'object' ? `[key: string]: ${schemaText(s.additionalProperties, depth + 1)}` : '';
    if (props.length === 0) return extra ? `{ ${extra} }` : 'object';
    if (depth > 3) return 'object';
    const pad = '  '.repeat(depth + 1);
    const lines = props.map(([k, v]) => `${pad}${escape(k)}${required.includes(k) ? '' : '?'}: ${schemaText(v, depth + 1)}`);
    if (extra) lines.push(`${pad}${extra}`);
    return `{\n${lines.join(',\n')}\n${'  '.repeat(depth)}}${nullable}`;
  }
  return (escape(type) || 'any') + nullable;
}

function renderOperation(path: string, method: string, op: JsonObject): string {
  const params = arr(op.parameters).map(obj);
  const body = obj(obj(op.requestBody).content);
  const responses = Object.entries(obj(op.responses));
  return `<section class="op" id="${anchor(`${method}-${path}`)}">
  <h3><span class="method ${method}">${method.toUpperCase()}</span> <code>${escape(path)}</code></h3>
  ${op.summary ? `<p class="summary">${escape(str(op.summary))}</p>` : ''}
  ${op.description ? `<p>${escape(str(op.description))}</p>` : ''}
  ${
    params.length
      ? `<table><tr><th>parameter</th><th>in</th><th>type</th><th>about</th></tr>${params
          .map(
            (p) =>
              `<tr><td><code>${escape(str(p.name))}</code>${p.required ? ' (required)' : ''}</td><td>${escape(str(p.in))}</td><td><pre>${schemaText(p.schema)}</pre></td><td>${escape(str(p.description) || str(obj(p.schema).description))}</td></tr>`,
          )
          .join('')}</table>`
      : ''
  }
  ${Object.entries(body)
    .map(([type, media]) => `<p>Request body (<code>${escape(type)}</code>):</p><pre>${schemaText(obj(media).schema)}</pre>`)
    .join('')}
  <table><tr><th>status</th><th>meaning</th><th>body</th></tr>${responses
    .map(([status, r]) => {
      const content = Object.entries(obj(obj(r).content));
      return `<tr><td>${escape(status)}</td><td>${escape(str(obj(r).description))}</td><td>${content
        .map(([type, media]) => `<code>${escape(type)}</code><pre>${schemaText(obj(media).schema)}</pre>`)
        .join('')}</td></tr>`;
    })
    .join('')}</table>
</section>`;
}

export function renderApiReference(doc: JsonObject): string {
  const info = obj(doc.info);
  const operations = Object.entries(obj(doc.paths)).flatMap(([path, item]) =>
    METHODS.filter((m) => obj(item)[m]).map((m) => ({ path, method: m, op: obj(obj(item)[m]) })),
  );
  const schemas = Object.entries(obj(obj(doc.components).schemas));
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><link rel="icon" href="data:,"><title>${escape(str(info.title))}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:1rem 2rem;display:flex;justify-content:space-between;align-items:center}
header a{color:#9cc3ff} main{max-width:70rem;margin:0 auto;padding:1rem 2rem}
nav ul{columns:2;list-style:none;padding:0} .op{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.method{display:inline-block;min-width:4.5em;text-align:center;border-radius:4px;color:#fff;font-size:.8em;padding:.1em .4em}
.get{background:#2b7de9}.post{background:#1f9d55}.put,.patch{background:#c77c02}.delete{background:#c53030}
table{border-collapse:collapse;width:100%;margin:.5rem 0} th,td{border-top:1px solid #eef0f3;text-align:left;vertical-align:top;padding:.3rem .5rem}
pre{margin:0;font-size:.85em;white-space:pre-wrap} .summary{font-weight:600} button{cursor:pointer}
</style></head>
<body><header><strong>${escape(str(info.title))} <small>v${escape(str(info.version))}</small></strong>
<span><a href="${ADMIN_BASE}/queues">Queue dashboard</a> · <a href="${ADMIN_BASE}/docs/openapi.json">openapi.json</a>
<form method="post" action="${ADMIN_BASE}/logout" style="display:inline"><button type="submit">Log out</button></form></span></header>
<main>
<p>Every route except <code>/health</code> and <code>/ready</code> needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>
<nav><ul>${operations.map(({ path, method }) => `<li><a href="#${anchor(`${method}-${path}`)}">${method.toUpperCase()} ${escape(path)}</a></li>`).join('')}</ul></nav>
${operations.map(({ path, method, op }) => renderOperation(path, method, op)).join('\n')}
<h2>Schemas</h2>
${schemas.map(([name, schema]) => `<section class="op" id="schema-${anchor(name)}"><h3>${escape(name)}</h3><pre>${schemaText(schema)}</pre></section>`).join('\n')}
</main></body></html>`;
}
