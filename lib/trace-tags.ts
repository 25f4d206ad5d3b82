/**
 * What a trace span may carry of a call's params. Moleculer tags every span with the full params by
 * default, and spans leave the process (Jaeger, Zipkin, `$tracing.spans` to every node): passwords,
 * refresh tokens, card tokens and sealed reset links would be readable by whoever reads traces.
 * Values under a secret-looking key are replaced; anything that is not plain data (the gateway's
 * request and response objects, buffers) is named, not copied.
 */

/** Keys whose values are secrets: passwords, any token, keys, signatures, card data. */
const SECRET_KEY = /pass(word|phrase)?|token|secret|authori[sz]ation|cookie|api[-_]?key|signature|card[-_]?number|cvc|cvv/i;

export const REDACTED = "[redacted]";

/** Whether a param's name (or path, e.g. `paymentMethod.token`) says its value is a secret. */
export const isSecretKey = (name: string): boolean => SECRET_KEY.test(name);

/** Deep enough for the shop's params; deeper parts are elided, not copied. */
const MAX_DEPTH = 6;
const MAX_ITEMS = 50;

function isPlainObject(value: object): value is Record<string, unknown> {
	const proto = Object.getPrototypeOf(value);
	return proto === Object.prototype || proto === null;
}

/**
 * A value that is a payment secret whatever its field is called: a card or payment-method token, a
 * PaymentIntent's client secret (a client may send `paymentMethod: "pm_card_..."`, a string).
 */
const SECRET_VALUE = /^(?:pm|tok|src|seti)_[A-Za-z0-9_]{4,}$|_secret_/;

/** A copy of `value` fit for a span tag. */
export function traceSafe(value: unknown, depth = 0): unknown {
	if (typeof value === "string") return SECRET_VALUE.test(value) ? REDACTED : value;
	if (value == null || typeof value !== "object") return value;
	if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
	if (depth >= MAX_DEPTH) return "[…]";
	if (Array.isArray(value)) return value.slice(0, MAX_ITEMS).map((v) => traceSafe(v, depth + 1));
	if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
	if (!isPlainObject(value)) return `[${value.constructor?.name ?? "object"}]`;
	const out: Record<string, unknown> = {};
	for (const [key, v] of Object.entries(value)) out[key] = isSecretKey(key) && v != null && v !== "" ? REDACTED : traceSafe(v, depth + 1);
	return out;
}

/**
 * Moleculer's `tracing.tags.action`/`.event` as a function: called with the context when the span
 * starts (the params, made safe) and again with the result when it ends (nothing: responses carry
 * tokens too, and are not tagged by default either).
 */
export function safeParamTags(ctx: { params?: unknown }, ...afterCall: unknown[]): Record<string, unknown> {
	return afterCall.length ? {} : { params: traceSafe(ctx.params) };
}

/**
 * A validation problem as it may leave the action: fastest-validator echoes the refused value as
 * `actual`, and the error travels into spans (Moleculer tags errors with their `data`), the log and
 * other nodes. A password sent as a number, a token sent as an array: the value is redacted there.
 */
export function redactRefusedValue<T extends { field?: unknown; actual?: unknown }>(problem: T): T {
	if (problem === null || typeof problem !== "object" || !("actual" in problem)) return problem;
	const secret = typeof problem.field === "string" && isSecretKey(problem.field);
	problem.actual = secret && problem.actual != null && problem.actual !== "" ? REDACTED : traceSafe(problem.actual);
	return problem;
}
