import { slugify, isSlug, uniqueSlug, slugFamilyPattern } from "../../lib/slug";

describe("slugify", () => {
	test.each([
		["Classic Crew Tee", "classic-crew-tee"],
		["Crème Brûlée T-Shirt (XL)", "creme-brulee-t-shirt-xl"],
		["Home & Living", "home-and-living"],
		["  --Already--slugged--  ", "already-slugged"],
		["100% Cotton!!", "100-cotton"],
		["日本", ""],
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
