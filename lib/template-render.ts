/**
 * Notification templates: `{{name}}` and `{{order.number}}` placeholders, plus mustache-style
 * sections `{{#items}}…{{/items}}` (repeat for each item, or once when the value is truthy) and
 * `{{^trackingNumber}}…{{/trackingNumber}}` (only when empty).
 * Every value is escaped for HTML in "html" mode; in "text" and "line" (subjects) modes values keep
 * their characters. In every mode a value stays on one line and loses its control characters, so a
 * customer's first name cannot inject markup, headers, lines of its own or terminal escapes.
 * Template text itself is trusted.
 */
export type RenderMode = "html" | "text" | "line";
export type TemplateVars = Record<string, unknown>;

type Node = { kind: "text"; text: string } | { kind: "var"; path: string } | { kind: "section"; path: string; inverted: boolean; children: Node[] };

const TAG = /\{\{\s*([#^/]?)\s*([A-Za-z_][\w.]*|\.)\s*\}\}/g;

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;", "=": "&#61;" };

export function escapeHtml(value: string): string {
	return value.replace(/[&<>"'`=]/g, (c) => HTML_ESCAPES[c]);
}

/**
 * A value as it may appear in a message: each run of line breaks and other spacing controls (tab,
 * CR, LF, VT, FF, NEL, U+2028, U+2029) becomes one space; other C0/C1 controls (ESC, NUL, …) go.
 */
export function stripControlChars(value: string): string {
	return (
		value
			// eslint-disable-next-line no-control-regex -- matching control characters is the point
			.replace(/[\u0000-\u0008\u000E-\u001F\u007F-\u0084\u0086-\u009F]/g, "")
			// eslint-disable-next-line no-control-regex -- as above
			.replace(/[\t\n\u000B\u000C\r\u0085\u2028\u2029]+/g, " ")
	);
}

/** Parses a template; throws on an unbalanced section so a broken file fails at load, not at send. */
export function parseTemplate(template: string): Node[] {
	const root: Node[] = [];
	const stack: Array<{ path: string; children: Node[] }> = [{ path: "", children: root }];
	let last = 0;
	for (const m of template.matchAll(TAG)) {
		const [tag, sigil, path] = m;
		const top = stack[stack.length - 1];
		let start = m.index!;
		let end = start + tag.length;
		// A section tag alone on its line takes the line with it (as in mustache), so loops in
		// text templates do not leave blank lines behind.
		if (sigil) {
			const lineStart = template.lastIndexOf("\n", start - 1) + 1;
			const after = /^[ \t]*(\r?\n|$)/.exec(template.slice(end));
			if (lineStart >= last && /^[ \t]*$/.test(template.slice(lineStart, start)) && after) {
				start = lineStart;
				end += after[0].length;
			}
		}
		if (start > last) top.children.push({ kind: "text", text: template.slice(last, start) });
		last = end;
		if (sigil === "#" || sigil === "^") {
			const section: Node = { kind: "section", path, inverted: sigil === "^", children: [] };
			top.children.push(section);
			stack.push({ path, children: section.children });
		} else if (sigil === "/") {
			if (stack.length === 1 || top.path !== path) throw new Error(`Unexpected {{/${path}}} in template`);
			stack.pop();
		} else {
			top.children.push({ kind: "var", path });
		}
	}
	if (stack.length > 1) throw new Error(`Unclosed {{#${stack[stack.length - 1].path}}} in template`);
	if (last < template.length) root.push({ kind: "text", text: template.slice(last) });
	return root;
}

/** Names of the top-level variables a template reads (for checks that every template gets its data). */
export function templateVariables(template: string): string[] {
	const names = new Set<string>();
	const walk = (nodes: Node[], depth: number) => {
		for (const n of nodes) {
			if (n.kind === "var" && depth === 0 && n.path !== ".") names.add(n.path.split(".")[0]);
			if (n.kind === "section") {
				if (depth === 0) names.add(n.path.split(".")[0]);
				walk(n.children, depth + 1);
			}
		}
	};
	walk(parseTemplate(template), 0);
	return [...names].sort();
}

function lookup(scopes: unknown[], path: string): unknown {
	if (path === ".") return scopes[scopes.length - 1];
	const [head, ...rest] = path.split(".");
	// Innermost scope first, so an item's `name` wins over the customer's `name`.
	for (let i = scopes.length - 1; i >= 0; i--) {
		const scope = scopes[i];
		if (scope && typeof scope === "object" && Object.prototype.hasOwnProperty.call(scope, head)) {
			let value: unknown = (scope as Record<string, unknown>)[head];
			for (const key of rest) {
				value = value && typeof value === "object" && Object.prototype.hasOwnProperty.call(value, key) ? (value as Record<string, unknown>)[key] : undefined;
			}
			return value;
		}
	}
	return undefined;
}

function toText(value: unknown): string {
	if (value == null) return "";
	if (value instanceof Date) return value.toISOString();
	if (typeof value === "string") return value;
	if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
	// Objects have no sensible text form; printing "[object Object]" to a customer helps nobody.
	return "";
}

function isEmpty(value: unknown): boolean {
	return value == null || value === false || value === "" || (Array.isArray(value) && value.length === 0);
}

function renderNodes(nodes: Node[], scopes: unknown[], mode: RenderMode): string {
	let out = "";
	for (const n of nodes) {
		if (n.kind === "text") out += n.text;
		else if (n.kind === "var") {
			const text = toText(lookup(scopes, n.path));
			out += mode === "html" ? escapeHtml(stripControlChars(text)) : stripControlChars(text);
		} else {
			const value = lookup(scopes, n.path);
			if (n.inverted) {
				if (isEmpty(value)) out += renderNodes(n.children, scopes, mode);
			} else if (Array.isArray(value)) {
				for (const item of value) out += renderNodes(n.children, [...scopes, item], mode);
			} else if (!isEmpty(value)) {
				out += renderNodes(n.children, typeof value === "object" ? [...scopes, value] : scopes, mode);
			}
		}
	}
	return out;
}

export function renderTemplate(template: string | Node[], vars: TemplateVars, mode: RenderMode): string {
	const nodes = typeof template === "string" ? parseTemplate(template) : template;
	return renderNodes(nodes, [vars], mode);
}
