/**
 * Shapes of request input that no shop route takes, refused as a malformed request (400) before
 * any action sees them:
 * - a query parameter given more than once, or with brackets (`?from[]=1`, `?price[$gt]=1`): every
 *   query parameter of the shop is a single plain value;
 * - a JSON body that is not an object (`[1,2]`, `42`, `"x"`): every body of the shop is one. `null`
 *   and `[]` are taken as no body, as clients send them for "nothing" (a nil map, an empty array);
 * - a body nested deeper than MAX_BODY_DEPTH: the deepest body the shop takes nests 4 levels, and a
 *   body thousands of levels deep overflowed the stack when its validation error was written out;
 * - a property named `__proto__`: merged into an action's params it would set their prototype;
 * - a string (or property name) holding half of a UTF-16 surrogate pair (`"\ud800"`): JSON may
 *   spell one, but it is no character, and an answer that carried it back (a name on a public
 *   review) would be text strict clients refuse or cannot write out as UTF-8;
 * - a body of more than MAX_BODY_ITEMS properties and array elements, counted in its bytes before it
 *   is parsed (jsonItemsOver): 90,000 properties fit in the 1 MB limit and cost the gateway's one
 *   thread 0.2 s to parse, check and merge, so an anonymous client within the rate limit slowed every
 *   answer of the node to seconds.
 */

/** Levels of objects and arrays a body may nest (the shop's own bodies need 4). */
export const MAX_BODY_DEPTH = 32;

/** Properties and array elements a body may hold in all (a new product with 200 variants holds about 2,500). */
export const MAX_BODY_ITEMS = 5000;

/**
 * Whether a JSON text holds more than `limit` properties and array elements, read from its bytes, so
 * that such a body is refused before parsing it costs anything. Outside strings, each `,` is one more
 * item and each `[` or `{` its first: an upper bound (an empty `[]` counts one), exact enough for a limit.
 */
export function jsonItemsOver(bytes: Uint8Array, limit: number): boolean {
	// Every item but a container's first takes a comma: a text this short cannot hold more.
	if (bytes.length <= limit) return false;
	let items = 0;
	let inString = false;
	for (let i = 0; i < bytes.length; i++) {
		const b = bytes[i];
		if (inString) {
			if (b === 0x5c) i++; // a backslash: the next byte is escaped (\" or \\)
			else if (b === 0x22) inString = false;
		} else if (b === 0x22) inString = true;
		else if ((b === 0x2c || b === 0x5b || b === 0x7b) && ++items > limit) return true;
	}
	return false;
}

/** The first query parameter that is not a single plain value, as a message naming it; null when all are. */
export function queryShapeProblem(query: Record<string, unknown> | undefined): { field: string; message: string } | null {
	for (const [name, value] of Object.entries(query ?? {})) {
		if (SECRET_PARAMS.test(name)) return { field: name, message: `'${name}' is a secret: send it in the JSON body, never in the URL (URLs are logged, and kept by proxies and browsers)` };
		if (typeof value !== "string") return { field: name, message: `The query parameter '${name}' must be given once, as a plain value` };
	}
	return null;
}

/** Parameters that carry a secret (a password, a one-time or refresh token, a payment's client secret): bodies only. */
const SECRET_PARAMS = /^(?:password|currentPassword|newPassword|token|refreshToken|clientSecret)$/i;

/**
 * Also masked in logs and spans, though not the shop's: the usual names of other services' secrets, which
 * a client may put in a URL out of habit (`access_token`, `api_key`, ...).
 */
const OTHER_SECRET_PARAMS = /^(?:access_?token|id_?token|auth_?token|api_?key|apikey|secret|client_?secret|signature|sig|authorization|auth)$/i;

/** A URL as it may be logged: the value of a secret query parameter (refused, but sent) masked. */
export function withoutSecrets(url: string): string {
	const q = url.indexOf("?");
	// Every request is logged: most have no query, or none that could name a secret (encoded or not).
	if (q < 0 || !/pass|token|secret|key|sig|auth|%/i.test(url.slice(q))) return url;
	// The name as qs reads it: `password[]` and `password[a]` are `password` to the refusal.
	return (
		url.slice(0, q) +
		url.slice(q).replace(/([?&])([^=&#]*)=([^&#]*)/g, (all, sep: string, name: string) => {
			const plain = safeDecode(name).split("[")[0];
			return SECRET_PARAMS.test(plain) || OTHER_SECRET_PARAMS.test(plain) ? `${sep}${name}=***` : all;
		})
	);
}

function safeDecode(text: string): string {
	try {
		return decodeURIComponent(text.replace(/\+/g, " "));
	} catch {
		return text;
	}
}

/** `null` and `[]`: what clients send for "no body" (moleculer-web merges them as no parameters). */
export const isEmptyBody = (body: unknown): boolean => body === null || (Array.isArray(body) && body.length === 0);

/** A lone surrogate: with the `u` flag a well-formed pair is one code point, and only a half alone is category Cs. */
const LONE_SURROGATE = /\p{Cs}/u;
const NOT_TEXT = "must be well-formed Unicode text (it holds half of a surrogate pair, which is no character)";

/** `\ud800` as the six characters a JSON text would spell it with. */
function escapeLoneSurrogates(text: string): string {
	return text.replace(/\p{Cs}/gu, (half) => `\\u${half.charCodeAt(0).toString(16)}`);
}

/** What makes a parsed JSON body one the shop does not take; null when it is fine. Walks without recursion. */
export function bodyShapeProblem(body: unknown): { field?: string; message: string } | null {
	if (isEmptyBody(body)) return null;
	if (body === null || typeof body !== "object" || Array.isArray(body)) return { message: "The body must be a JSON object" };
	const stack: Array<{ value: object; path: string; depth: number }> = [{ value: body, path: "", depth: 1 }];
	while (stack.length) {
		const { value, path, depth } = stack.pop()!;
		if (depth > MAX_BODY_DEPTH) return { field: path, message: `The body nests deeper than ${MAX_BODY_DEPTH} levels` };
		for (const key of Object.keys(value)) {
			const at = Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
			if (key === "__proto__") return { field: at, message: "A property may not be named __proto__" };
			// Named with the half escaped: echoed raw, it would make the answer itself text strict clients refuse.
			if (LONE_SURROGATE.test(key)) return { field: escapeLoneSurrogates(at), message: `A property name ${NOT_TEXT}` };
			const child = (value as Record<string, unknown>)[key];
			if (typeof child === "string" && LONE_SURROGATE.test(child)) return { field: at, message: `${at} ${NOT_TEXT}` };
			if (child !== null && typeof child === "object") stack.push({ value: child, path: at, depth: depth + 1 });
		}
	}
	return null;
}
