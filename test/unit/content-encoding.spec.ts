/** lib/content-encoding.ts: the coding an Accept-Encoding header takes, and bodies in it. */
import zlib from "node:zlib";
import { acceptedCoding, compress, compressOnce, varyOn } from "../../lib/content-encoding";

describe("acceptedCoding", () => {
	test.each<[string | string[] | undefined, string | null]>([
		[undefined, null],
		["", null],
		["identity", null],
		["deflate", null], // not one the gateway writes
		["gzip", "gzip"],
		["GZip", "gzip"],
		["x-gzip", "gzip"],
		["gzip, deflate", "gzip"], // Node's fetch
		["gzip, deflate, br, zstd", "br"], // a browser over HTTPS: brotli at equal weight
		["br;q=0.5, gzip", "gzip"],
		["br;q=1.0, gzip;q=0.999", "br"],
		["gzip;q=0", null],
		["gzip;q=0, br;q=0", null],
		["gzip ; q=0.5", "gzip"],
		["*", "br"],
		["*;q=0", null],
		["*;q=0.1, br;q=0", "gzip"], // `*` stands for each coding not named
		["gzip;q=0, *", "br"],
		[["gzip", "br;q=0"], "gzip"], // the header sent twice
		// A weight that is no number from 0 to 1 refuses its coding.
		["gzip;q=2", null],
		["gzip;q=abc", null],
		["gzip;q=0.5555", null],
		["gzip;q=", null],
		["gzip;q=1, br;q=-1", "gzip"],
		// Other parameters are no weight.
		["gzip;level=9", "gzip"],
		[" , ,gzip", "gzip"],
	])("%j → %s", (header, expected) => {
		expect(acceptedCoding(header)).toBe(expected);
	});
});

describe("compress", () => {
	const json = JSON.stringify({ items: Array.from({ length: 50 }, (_, i) => ({ id: `p${i}`, name: `Product ${i}`, price: 1000 + i })) });

	test("each coding inflates to the same bytes, and is smaller", () => {
		const gz = compress(json, "gzip");
		const br = compress(Buffer.from(json), "br");
		expect(zlib.gunzipSync(gz).toString()).toBe(json);
		expect(zlib.brotliDecompressSync(br).toString()).toBe(json);
		expect(gz.length).toBeLessThan(json.length / 3);
		expect(br.length).toBeLessThan(json.length / 3);
	});

	test("compressOnce keeps one copy per Buffer body and coding; a string body is compressed each time", () => {
		const body = Buffer.from(json);
		const first = compressOnce(body, "gzip");
		expect(compressOnce(body, "gzip")).toBe(first);
		expect(compressOnce(body, "br")).not.toBe(first);
		expect(zlib.brotliDecompressSync(compressOnce(body, "br")).toString()).toBe(json);
		expect(compressOnce(Buffer.from(json), "gzip")).not.toBe(first);
		expect(compressOnce(json, "gzip")).not.toBe(compressOnce(json, "gzip"));
	});
});

describe("varyOn", () => {
	test.each<[string | number | string[] | undefined, string]>([
		[undefined, "Accept-Encoding"],
		["", "Accept-Encoding"],
		["Origin", "Origin, Accept-Encoding"],
		["Origin, accept-encoding", "Origin, accept-encoding"],
		[["Origin", "Cookie"], "Origin, Cookie, Accept-Encoding"],
		["*", "*"],
	])("%j → %j", (current, expected) => {
		expect(varyOn(current, "Accept-Encoding")).toBe(expected);
	});
});
