/** lib/etag.ts: the validators of GET answers and If-None-Match. */
import { ifNoneMatchHits, weakEtag } from "../../lib/etag";

describe("weakEtag", () => {
	test("the same bytes give the same tag, other bytes another; a string and its UTF-8 bytes agree", () => {
		const body = JSON.stringify({ rows: [{ name: "Café" }] });
		expect(weakEtag(body)).toBe(weakEtag(Buffer.from(body)));
		expect(weakEtag(body)).not.toBe(weakEtag(body.replace("é", "e")));
		expect(weakEtag(body)).toMatch(/^W\/"[0-9a-f]+-[A-Za-z0-9_-]{27}"$/);
	});
});

describe("ifNoneMatchHits", () => {
	const tag = weakEtag("{}");
	test.each<[string | string[] | undefined, boolean]>([
		[undefined, false],
		["", false],
		[tag, true],
		[tag.slice(2), true], // the strong form of the same tag: weak comparison
		[`"other", ${tag}`, true],
		[["\"other\"", tag], true],
		["*", true],
		[" * ", true],
		['"other"', false],
		["W/\"other\", W/\"another\"", false],
		["garbage", false],
		[tag.slice(0, -2) + '"', false],
	])("%j → %s", (header, hit) => {
		expect(ifNoneMatchHits(header, tag)).toBe(hit);
	});
});
