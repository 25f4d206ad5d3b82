/**
 * Validators for GET answers, so a browser, a storefront's server or a CDN can revalidate a product
 * page or list it already holds (If-None-Match) and get a 304 without the body, as from Express.
 */
import crypto from "node:crypto";

/** A weak ETag of the body's bytes: another encoding of the same JSON could differ in bytes only. */
export function weakEtag(body: string | Buffer): string {
	const hash = crypto.createHash("sha1").update(body).digest("base64url").slice(0, 27);
	return `W/"${Buffer.byteLength(body).toString(16)}-${hash}"`;
}

/**
 * Whether a GET's If-None-Match names this ETag (RFC 9110 13.1.2: weak comparison, a list, or `*`),
 * so the answer is a 304. A malformed header matches nothing: the client gets the full answer. A
 * request's `Cache-Control: no-cache` does not stop it (RFC 9111 5.2.1.4: it asks caches to validate
 * with the origin, which this is); fetch() adds it to every request with If-None-Match.
 */
export function ifNoneMatchHits(header: string | string[] | undefined, etag: string): boolean {
	if (header === undefined) return false;
	const value = (Array.isArray(header) ? header.join(",") : header).trim();
	if (value === "*") return true;
	const opaque = (tag: string) => tag.replace(/^W\//, "");
	const mine = opaque(etag);
	return (value.match(/(?:W\/)?"[^"]*"/g) ?? []).some((tag) => opaque(tag) === mine);
}
