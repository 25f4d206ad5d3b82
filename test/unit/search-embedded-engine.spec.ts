/** The embedded engine on its own: typo tolerance and ranking, with no broker. */
import { EmbeddedSearchEngine } from "../../adapters/search/embedded-engine";
import { toIndexDoc, type SearchQuery } from "../../lib/search-query";

const products = [
	{ id: "p-candle", name: "Scented Candle", description: "Soy wax in a glass jar" },
	{ id: "p-lantern", name: "Candel Lantern", description: "A lantern by Candel" },
	{ id: "p-poster", name: "Concert Poster", description: "Printed on matte paper" },
	{ id: "p-mug", name: "Enamel Mug", description: "Camping mug" },
	{ id: "p-jacket", name: "Rain Jacket", description: "Waterproof shell" },
	{ id: "p-salt", name: "Salt Lamp", description: "Himalayan rock" },
	{ id: "p-crate", name: "Slat Crate", description: "Wooden crate, to store salt or apples" },
	{ id: "p-bag", name: "Lightweight Messenger Bag", description: "Fits a backpack's worth" },
	{ id: "p-map", name: "Straße Map Print", description: "Ærø island, Smørrebrød, Łódź" },
];

describe("embedded engine typo tolerance", () => {
	const engine = new EmbeddedSearchEngine();
	const search = async (text: string) => (await engine.search({ text, sort: "relevance", page: 1, pageSize: 20 } as SearchQuery)).rows.map((r) => r.id);
	const suggest = async (prefix: string) => (await engine.suggest(prefix, 10)).map((s) => s.productId);

	beforeAll(() => engine.upsert(products.map((p) => toIndexDoc(p, 1))));

	test.each([
		// Two neighbouring letters swapped: one edit, as in Elasticsearch.
		["cnadle", "p-candle"],
		["postre", "p-poster"],
		["jakcet", "p-jacket"],
		["scented cnadle", "p-candle"],
		// One substitution, insertion or deletion, as before.
		["candls", "p-candle"],
		["mugg", "p-mug"],
		["jackt", "p-jacket"],
		// A word of 8 letters or more may have two edits, a swap being one: a swap and another typo, or two swaps.
		["mesegner", "p-bag"],
		["ligthweihgt", "p-bag"],
		["bcakpakc", "p-bag"],
		["messegner", "p-bag"],
		// Letters no accent stripping reduces, spelled out as Elasticsearch's asciifolding does.
		["strasse", "p-map"],
		["STRASSE map", "p-map"],
		["aero", "p-map"],
		["smorrebrod", "p-map"],
		["lodz", "p-map"],
		["straße", "p-map"],
	])("%s finds %s", async (q, id) => {
		expect(await search(q)).toContain(id);
	});

	test.each([
		["zebra"],
		// Two swaps are two edits, more than a six-letter word allows.
		["acnlde"],
		// A swap plus another typo, likewise.
		["cnadlx"],
		// Three edits in a long word: two swaps and another typo.
		["bcakpakx"],
		// Three letters are too few for any typo, a swap included.
		["mgu"],
		["enamle mgu"],
		// Every word must match.
		["scented postre"],
		["rain x"],
	])("%s finds nothing", async (q) => {
		expect(await search(q)).toEqual([]);
	});

	// A shopper pressing Enter before a third letter finds what autocomplete offered for the same text.
	test.each([
		["rain ja", ["p-jacket"]],
		["scented c", ["p-candle"]],
		["enamel m", ["p-mug"]],
		["concert p", ["p-poster"]],
	])("the last word is a prefix at any length: %s", async (q, ids) => {
		expect(await search(q)).toEqual(ids);
		expect(await suggest(q)).toEqual(ids);
	});

	test("an exact match ranks above a swap", async () => {
		expect(await search("candel")).toEqual(["p-lantern", "p-candle"]);
		expect(await search("candle")).toEqual(["p-candle", "p-lantern"]);
	});

	test("a product holding both the word and its swap does not outrank the exact match in the name", async () => {
		// The crate has "salt" in its description and the swap "slat" in its name.
		expect((await search("salt"))[0]).toBe("p-salt");
	});

	test("autocomplete forgives a swap from five letters on, in the word being typed", async () => {
		expect(await suggest("candel")).toEqual(["p-lantern", "p-candle"]);
		expect(await suggest("cnadl")).toEqual(["p-candle"]);
		expect(await suggest("postre")).toEqual(["p-poster"]);
		expect(await suggest("scented cnadl")).toEqual(["p-candle"]);
		expect(await suggest("cnad")).toEqual([]);
		expect(await suggest("zebra")).toEqual([]);
	});
});
