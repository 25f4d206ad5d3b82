/**
 * Compressed answers: which coding a request takes (Accept-Encoding, RFC 9110 12.5.3), and a body
 * in that coding. A page of 20 products is 11–14 KB of JSON and ~2 KB compressed.
 */
import zlib from "node:zlib";

export type Coding = "br" | "gzip";

/** Smaller bodies are sent as they are: compressing them saves less than it costs. */
export const COMPRESS_MIN_BYTES = 1024;

/** Ours in the order preferred at equal weight: brotli is smaller at the same speed. */
const CODINGS: readonly Coding[] = ["br", "gzip"];

/**
 * The coding to answer in, or null for none. Each coding takes its own weight, else the weight of `*`,
 * else none (not accepted); weight 0 refuses it. The highest weight wins, brotli on a tie. A weight
 * that is no number from 0 to 1 refuses its coding: a malformed header gets the plain answer, which
 * every client reads.
 */
export function acceptedCoding(header: string | string[] | undefined): Coding | null {
	if (header === undefined) return null;
	const weights = new Map<string, number>();
	for (const part of (Array.isArray(header) ? header.join(",") : header).split(",")) {
		const [name, ...params] = part.split(";").map((s) => s.trim().toLowerCase());
		if (!name) continue;
		let q = 1;
		for (const p of params) {
			const [key, value = ""] = p.split("=").map((s) => s.trim());
			if (key === "q") q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value) ? Number(value) : 0;
		}
		// x-gzip is gzip's old name (RFC 9110 8.4.1.3).
		weights.set(name === "x-gzip" ? "gzip" : name, q);
	}
	let best: Coding | null = null;
	let bestQ = 0;
	for (const coding of CODINGS) {
		const q = weights.get(coding) ?? weights.get("*") ?? 0;
		if (q > bestQ) [best, bestQ] = [coding, q];
	}
	return best;
}

/** A body in `coding`; fast settings, as a reply is compressed while the client waits. */
export function compress(body: string | Buffer, coding: Coding): Buffer {
	if (coding === "gzip") return zlib.gzipSync(body, { level: 6 });
	return zlib.brotliCompressSync(body, {
		params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: Buffer.byteLength(body) },
	});
}

/** Compressed copies of bodies sent again and again (a cached product list), made once per body and coding. */
const compressedCopies = new WeakMap<Buffer, Partial<Record<Coding, Buffer>>>();

/**
 * `compress`, remembering the result for a Buffer body: the gateway keeps one Buffer per cached answer
 * (for as long as the answer is cached), so those are compressed once. A string is a one-off answer.
 */
export function compressOnce(body: string | Buffer, coding: Coding): Buffer {
	if (typeof body === "string") return compress(body, coding);
	let copies = compressedCopies.get(body);
	if (!copies) compressedCopies.set(body, (copies = {}));
	return (copies[coding] ??= compress(body, coding));
}

/** Adds `field` to the response's Vary header, keeping what it names already. */
export function varyOn(current: string | number | string[] | undefined, field: string): string {
	// Most answers: nothing to keep (this runs for every JSON answer).
	if (current === undefined || current === "") return field;
	const names = (Array.isArray(current) ? current.join(",") : String(current))
		.split(",")
		.map((s) => s.trim())
		.filter(Boolean);
	if (names.some((n) => n === "*" || n.toLowerCase() === field.toLowerCase())) return names.join(", ");
	return [...names, field].join(", ");
}
