import { slugify, isSlug, uniqueSlug, slugFamilyPattern, MAX_SLUG_LENGTH } from "../../lib/slug";

describe("slugify", () => {
	test.each([
		["Classic Crew Tee", "classic-crew-tee"],
		["Crème Brûlée T-Shirt (XL)", "creme-brulee-t-shirt-xl"],
		["Home & Living", "home-and-living"],
		["  --Already--slugged--  ", "already-slugged"],
		["100% Cotton!!", "100-cotton"],
		["日本", ""],
		// Latin letters without an accent to strip are spelled out, not dropped.
		["Straße Lamp", "strasse-lamp"],
		["Ærø Lamp", "aero-lamp"],
		["Œuvre Łódź Þing", "oeuvre-lodz-thing"],
		["x".repeat(100), "x".repeat(80)],
	])("%s → %s", (input, slug) => {
		expect(slugify(input)).toBe(slug);
	});

	test("never ends with a dash after truncation", () => {
		expect(slugify(`${"a".repeat(79)} b`)).toBe("a".repeat(79));
	});
});

describe("isSlug", () => {
	test.each([
		["tote-bag", true],
		["tote-bag-2", true],
		["Tote-Bag", false],
		["tote--bag", false],
		["-tote", false],
		["", false],
	])("%s → %s", (value, ok) => expect(isSlug(value)).toBe(ok));
});

describe("uniqueSlug", () => {
	test.each([
		[[], "tee"],
		[["tee"], "tee-2"],
		[["tee", "tee-2", "tee-3"], "tee-4"],
		[["tee", "tee-3"], "tee-2"],
		[["tee-2"], "tee"],
	])("taken %j → %s", (taken, slug) => expect(uniqueSlug("tee", taken)).toBe(slug));
});

describe("slugFamilyPattern", () => {
	test.each([
		["tee", true],
		["tee-2", true],
		["tee-shirt", false],
		["a-tee", false],
	])("%s in the family of tee: %s", (slug, inFamily) => expect(slugFamilyPattern("tee").test(slug)).toBe(inFamily));
});

describe("a long name's numbered slugs stay within MAX_SLUG_LENGTH and in their family", () => {
	// A name whose slug is cut at the limit: "long-product-name-...".
	const base = slugify(`${"Long product name ".repeat(6)}`);
	const numbered = (taken: string[]) => uniqueSlug(base, taken);

	test("the base itself fills the limit", () => expect(base.length).toBeGreaterThan(MAX_SLUG_LENGTH - 4));

	test.each([
		["the second", 1],
		["the tenth", 9],
		["the hundred-and-first", 100],
	])("%s of the name gets a slug the slug rule accepts", (_which, before) => {
		const taken = [base];
		for (let i = 1; i < before; i++) taken.push(numbered(taken));
		const slug = numbered(taken);
		expect(taken).not.toContain(slug);
		expect(slug.length).toBeLessThanOrEqual(MAX_SLUG_LENGTH);
		expect(isSlug(slug)).toBe(true);
		expect(slug).toMatch(new RegExp(`-${before + 1}$`));
		// What the store is asked for finds every slug taken so far, so the next one is free.
		for (const t of [...taken, slug]) expect(slugFamilyPattern(base).test(t)).toBe(true);
	});

	test("no dash is left before the number when the cut falls on one", () => {
		const dashy = `${"a".repeat(77)}-bb`;
		expect(uniqueSlug(dashy, [dashy])).toBe(`${"a".repeat(77)}-2`);
		expect(uniqueSlug(dashy, [dashy, `${"a".repeat(77)}-2`])).toBe(`${"a".repeat(77)}-3`);
	});

	test("a short name's family is still exact", () => {
		expect(slugFamilyPattern("tee").test("tee-shirt")).toBe(false);
		expect(slugFamilyPattern(base).test("tee")).toBe(false);
	});
});
