/**
 * A request's target as the gateway routes it (RFC 9112 3.2, RFC 3986 6.2.2). Two spellings of the
 * same address must reach the same route and the same cached answer, not a 404:
 * - absolute-form, `GET http://shop.example/api/products`, which a server must accept (proxies send it);
 * - letters, digits and `-_~` percent-encoded in the path (`/api/%70roducts`), which mean themselves.
 *   Not `.`: decoded, `%2E%2E` would become a `..` segment no client wrote.
 */

export interface RequestTarget {
	/** origin-form: the path and query. */
	url: string;
	/**
	 * The host of an absolute-form target, which replaces the Host header (RFC 9112 3.2.2). Empty
	 * (`http:///api/health`): the target is invalid (RFC 9110 4.2.1), a 400.
	 */
	host?: string;
}

const UNRESERVED_ESCAPE = /%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[Dd]|5[Ff]|7[Ee])/g;

/**
 * The origin-form of a request target, and the host an absolute-form one names. Other targets
 * (origin-form without escapes, `*`, an authority) come back as they are.
 */
export function normalizeRequestTarget(target: string): RequestTarget {
	let url = target;
	let host: string | undefined;
	const absolute = /^https?:\/\/([^/?#]*)/i.exec(url);
	if (absolute) {
		// userinfo is not part of an http(s) URI's authority any more (RFC 9110 4.2.4); a host only.
		host = absolute[1].replace(/^.*@/, "");
		url = url.slice(absolute[0].length);
		if (!url.startsWith("/")) url = `/${url}`;
	}
	if (!url.includes("%")) return { url, host };
	const q = url.indexOf("?");
	const path = q < 0 ? url : url.slice(0, q);
	// A `%` that starts no escape: decoding around it could make one (`%%37%30` → `%70`), a third spelling.
	if (/%(?![0-9A-Fa-f]{2})/.test(path)) return { url, host };
	// Only the path: a query value is the action's to decode, escapes and all.
	const decoded = path.replace(UNRESERVED_ESCAPE, (esc) => String.fromCharCode(parseInt(esc.slice(1), 16)));
	return { url: q < 0 ? decoded : decoded + url.slice(q), host };
}

/**
 * Why a request's Host header makes it invalid (RFC 9112 3.2: an HTTP/1.1 request without one, or
 * any request with more than one, is a 400), or null. `rawHeaders` as Node gives them: name, value, ...
 */
export function hostHeaderProblem(httpVersion: string, rawHeaders: readonly string[]): string | null {
	let hosts = 0;
	for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].length === 4 && rawHeaders[i].toLowerCase() === "host") hosts++;
	if (hosts > 1) return "The request has more than one Host header";
	if (hosts === 0 && httpVersion === "1.1") return "An HTTP/1.1 request must name its Host";
	return null;
}
