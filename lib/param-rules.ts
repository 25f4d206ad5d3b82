/**
 * Reading actions' fastest-validator params schemas: the shorthand expanded, and the null check
 * fastest-validator leaves out. It lets `null` through any `optional` field (it treats null as
 * "not given"), so a PATCH of `{"price": null}` would store a null price. Here null is refused on
 * an optional field unless its rule says `nullable: true` (or gives a default that replaces it);
 * on a required field fastest-validator refuses it itself. Also the shop's own pieces of
 * fastest-validator: its messages, and a length counted in characters.
 */

/** fastest-validator shorthand "string|min:3|optional" → object form. */
export function expandRule(rule: any): any {
	if (typeof rule === "string") {
		const [type, ...mods] = rule.split("|");
		const out: Record<string, any> = { type: type.trim() };
		for (const m of mods) {
			const [k, v] = m.split(":");
			out[k.trim()] = v === undefined ? true : isNaN(Number(v)) ? v : Number(v);
		}
		return out;
	}
	if (Array.isArray(rule)) return { type: "multi", rules: rule };
	if (rule && typeof rule === "object" && !rule.type && !rule.$$type) return { type: "object", props: rule };
	if (rule && rule.$$type) {
		const { $$type, ...props } = rule;
		return { ...expandRule($$type), props };
	}
	return rule ?? { type: "any" };
}

/** A field given as null where its rule does not take null, in the broker's ValidationError shape. */
export interface NullProblem {
	type: "nullNotAllowed";
	field: string;
	message: string;
	actual: null;
}

type Check = (value: unknown, path: string, out: NullProblem[]) => void;

/** Null passes fastest-validator only on an optional field; these take it on purpose. */
const takesNull = (rule: any) => rule.nullable === true || rule.default !== undefined || rule.type === "any" || rule.type === "forbidden";

/** The checks of an object's properties (a params schema itself, or a nested `props`). */
function propsCheck(props: Record<string, any>): Check | null {
	const checks: Array<[string, Check]> = [];
	for (const [name, raw] of Object.entries(props)) {
		if (name.startsWith("$$")) continue;
		const check = ruleCheck(expandRule(raw));
		if (check) checks.push([name, check]);
	}
	if (!checks.length) return null;
	return (value, path, out) => {
		if (value === null || typeof value !== "object" || Array.isArray(value)) return;
		for (const [name, check] of checks) {
			const v = (value as Record<string, unknown>)[name];
			if (v !== undefined) check(v, path ? `${path}.${name}` : name, out);
		}
	};
}

function ruleCheck(rule: any): Check | null {
	const refuseNull = rule.optional === true && !takesNull(rule);
	let inner: Check | null = null;
	if (rule.type === "object" && (rule.props || rule.properties)) inner = propsCheck(rule.props ?? rule.properties);
	else if (rule.type === "array" && rule.items) {
		const item = ruleCheck(expandRule(rule.items));
		if (item) inner = (value, path, out) => Array.isArray(value) && value.forEach((v, i) => item(v, `${path}[${i}]`, out));
	}
	if (!refuseNull && !inner) return null;
	return (value, path, out) => {
		if (value === null) {
			if (refuseNull) out.push({ type: "nullNotAllowed", field: path, message: `The '${path}' field cannot be null; leave it out instead.`, actual: null });
		} else inner?.(value, path, out);
	}
}

/** A checker for a params schema: the fields given as null that may not be; null when none can be. */
export function nullFieldsCheck(schema: Record<string, any>): ((params: unknown) => NullProblem[]) | null {
	const check = propsCheck(schema);
	if (!check) return null;
	return (params) => {
		const out: NullProblem[] = [];
		check(params, "", out);
		return out;
	};
}

/**
 * Messages the shop's validator uses instead of fastest-validator's own (moleculer.config.ts).
 * Its enumValue message put the allowed list where the refused value belongs ("The 'sort' field
 * value 'relevance, price' does not match"). No double quotes: fastest-validator inlines these
 * into generated code as string literals.
 */
export const VALIDATOR_MESSAGES = {
	enumValue: "The '{field}' field value '{actual}' is not one of the allowed values: {expected}.",
} as const;

/** Bidirectional overrides and isolates: they display the rest of the line in another order than written ("Trojan Source"). */
const BIDI_CONTROLS = "\\u202A-\\u202E\\u2066-\\u2069";

/**
 * Text a page shows on one line as it is written: no control character, line or paragraph separator,
 * or bidirectional control (names, review titles). The LRM/RLM marks (U+200E/200F) only nudge and stay.
 */
export const ONE_LINE_TEXT = new RegExp(`^[^\\p{Cc}\\u2028\\u2029${BIDI_CONTROLS}]*$`, "u");
/** The same over several lines: line breaks (LF, or CRLF from a form's textarea) and tabs are kept. */
export const MULTILINE_TEXT = new RegExp(`^(?:[^\\p{Cc}${BIDI_CONTROLS}]|[\\t\\n]|\\r(?=\\n))*$`, "u");
/** A string rule's check that its value is ONE_LINE_TEXT (names, address lines, SKUs), the refusal naming the field. */
export const oneLineRule = { pattern: ONE_LINE_TEXT, messages: { stringPattern: "The '{field}' field must not contain line breaks, control characters or bidirectional overrides." } } as const;
/** The same for MULTILINE_TEXT (descriptions). */
export const multilineRule = { pattern: MULTILINE_TEXT, messages: { stringPattern: "The '{field}' field must not contain bidirectional overrides or control characters other than line breaks and tabs." } } as const;

/** What ONE_LINE_TEXT refuses, and halves of surrogate pairs: to take out of text stored before it was refused. */
export const NOT_ONE_LINE_TEXT = new RegExp(`[\\p{Cc}\\p{Cs}\\u2028\\u2029${BIDI_CONTROLS}]`, "gu");

/** Characters as a reader counts them: code points, so an emoji is one, not its two UTF-16 units. */
export function charCount(text: string): number {
	let n = 0;
	for (const _ of text) n++;
	return n;
}

/**
 * A fastest-validator `custom` check: at most `max` characters (code points). The string rule's own
 * `max` counts UTF-16 units while its message says characters. Refusals read as that rule's
 * (stringMax, with the count in `actual`).
 */
export function maxChars(max: number) {
	const check = (value: unknown, errors: Array<{ type: string; expected: number; actual: number }>) => {
		if (typeof value === "string" && value.length > max) {
			const count = charCount(value);
			if (count > max) errors.push({ type: "stringMax", expected: max, actual: count });
		}
		return value;
	};
	// For the API document (lib/openapi.ts): JSON Schema's maxLength counts characters too.
	return Object.assign(check, { maxChars: max });
}

const ISO_DATE = /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?([Zz]|[+-](\d{2}):(\d{2})))?$/;

/**
 * An ISO 8601 date as a Date, or undefined when the text is none: a day alone (midnight UTC), or a
 * date and time with its zone (`Z` or an offset). `new Date()` took far more and rolled impossible
 * days over: 2027-02-30 became March 2nd, "March 1, 2026" and a time without a zone read as the
 * server's local time.
 */
export function parseIsoDate(text: string): Date | undefined {
	const m = ISO_DATE.exec(text);
	if (!m) return undefined;
	const [, y, mo, d, h = "0", mi = "0", s = "0", , oh = "0", om = "0"] = m;
	// ISO 8601 and ECMAScript have no year -0; V8 read it as 2001 in the server's local time.
	if (y === "-000000") return undefined;
	const day = new Date(0);
	day.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
	const exists = day.getUTCMonth() === Number(mo) - 1 && day.getUTCDate() === Number(d);
	if (!exists || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59 || Number(oh) > 23 || Number(om) > 59) return undefined;
	const date = new Date(text);
	return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * The params rule of a date: an ISO 8601 string (see parseIsoDate), handed to the action as a Date.
 * Anything else (a number, an impossible day, another format) is a 422 naming the field.
 */
export function isoDateRule(opts: { optional?: boolean; nullable?: boolean } = {}) {
	const check = (value: unknown, errors: Array<{ type: string; actual: unknown }>) => {
		// Whether a field may be left out or null is the rule's own optional/nullable (and nullFieldsCheck).
		if (value == null) return value;
		// A Date: a call from inside the process (over a transporter it arrives as its ISO string).
		const date = typeof value === "string" ? parseIsoDate(value.trim()) : value instanceof Date && !Number.isNaN(value.getTime()) ? value : undefined;
		if (!date) errors.push({ type: "isoDate", actual: value });
		return date ?? value;
	};
	return {
		type: "any",
		...opts,
		// For the API document (lib/openapi.ts): a date-time string.
		custom: Object.assign(check, { isoDate: true }),
		messages: { isoDate: "The '{field}' field must be an ISO 8601 date that exists, e.g. 2027-02-28 or 2027-02-28T18:00:00Z (a time needs its zone)." },
	};
}
