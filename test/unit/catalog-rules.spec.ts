import Validator from "fastest-validator";
import { centsRule, currencyRule, currencyFilterRule, optionsRule, variantRule, duplicateSkus, newProductDoc, newVariantDoc, toStoredImages, variantDisplayName, compareAtProblem, findCategoryRef, variantNamesFor, hasDerivedName, nameSortKey } from "../../lib/catalog-rules";

const v = new Validator();

describe("validation rules", () => {
	const price = v.compile({ price: centsRule });
	test.each([
		[1999, true],
		[0, true],
		[19.99, false],
		["abc", false],
		["1999", false],
		[-1, false],
		[null, false],
	])("price %j valid: %s", (value, ok) => expect(price({ price: value }) === true).toBe(ok));

	const currency = v.compile({ currency: currencyRule });
	test.each([
		["USD", true],
		["EUR", true],
		["usd", false],
		["US", false],
		["USDT", false],
		["JPY", true],
		["CHF", true],
		// Three capitals, but no ISO 4217 currency.
		["XYZ", false],
		["ABC", false],
		["QQQ", false],
	])("currency %s valid: %s", (value, ok) => expect(currency({ currency: value }) === true).toBe(ok));

	test("a made-up currency is one problem naming the field; an optional one may be left out", () => {
		expect(currency({ currency: "XYZ" })).toEqual([expect.objectContaining({ field: "currency", type: "stringPattern", message: expect.stringContaining("ISO 4217") })]);
		expect(v.compile({ currency: { ...currencyRule, optional: true } })({})).toBe(true);
	});

	test.each([
		["EUR", "EUR"],
		["eur", "EUR"],
		[" jpy ", "JPY"],
		["", ""],
		["xyz", null],
		["US", null],
		["euro", null],
	])("a currency filter %j reads as %j (null: a 422 naming it)", (value, read) => {
		const params: { currency?: string } = { currency: value };
		const result = v.compile({ currency: currencyFilterRule })(params);
		if (read === null) expect(result).toEqual([expect.objectContaining({ field: "currency", type: "stringPattern" })]);
		else expect({ result, currency: params.currency }).toEqual({ result: true, currency: read });
	});

	test.each([
		["clothing", "c1"],
		["Clothing", "c1"],
		[" T-SHIRTS ", "c2"],
		["c2", "c2"],
		["C2", undefined],
		["shoes", undefined],
		["", undefined],
	])("the category filter %j names %s", (ref, id) => {
		const tree = [{ id: "c1", slug: "clothing", children: [{ id: "c2", slug: "t-shirts", children: [] }] }, { id: "c3", slug: "home", children: [] }];
		expect(findCategoryRef(tree, ref)?.id).toBe(id);
	});

	const options = v.compile({ options: optionsRule });
	test.each([
		[{ Size: "L", Color: "Red" }, true],
		[{}, true],
		[{ Size: 42 }, false],
		[{ Size: "" }, false],
		[["L"], false],
	])("options %j valid: %s", (value, ok) => expect(options({ options: value }) === true).toBe(ok));

	test("a variant's price is optional and may be null; stock is a non-negative integer", () => {
		const variant = v.compile({ variant: variantRule });
		expect(variant({ variant: { sku: "A", stock: 1 } })).toBe(true);
		expect(variant({ variant: { sku: "A", stock: 1, price: null } })).toBe(true);
		expect(variant({ variant: { sku: "A", stock: -1 } })).not.toBe(true);
		expect(variant({ variant: { sku: "A", stock: 1, price: 9.5 } })).not.toBe(true);
		expect(variant({ variant: { stock: 1 } })).not.toBe(true);
	});
});

describe("duplicateSkus", () => {
	test.each([
		[["A", "B"], []],
		[["A", "B", "A"], ["A"]],
		[["A", "A", "A", "B", "B"], ["A", "B"]],
	])("%j → %j", (skus, dupes) => expect(duplicateSkus(skus.map((sku) => ({ sku })))).toEqual(dupes));
});

describe("documents from a create request", () => {
	const now = new Date("2025-05-01T00:00:00Z");

	test("a product defaults currency, description and rating and starts active", () => {
		expect(newProductDoc({ name: "Tee", price: 1999, variants: [] }, "tee", now)).toEqual({
			name: "Tee", sortName: "tee", slug: "tee", description: "", categoryId: null, price: 1999, fromPrice: 1999, compareAtPrice: null, currency: "USD",
			images: [], isActive: true, rating: { average: 0, count: 0 }, createdAt: now, updatedAt: now,
		});
	});

	test.each([
		["every variant at the product's price", [{ sku: "A", stock: 1 }, { sku: "B", stock: 1, price: null }], 1000],
		["one variant dearer", [{ sku: "A", stock: 1, price: 5000 }], 5000],
		["a dearer and a cheaper variant", [{ sku: "A", stock: 1, price: 5000 }, { sku: "B", stock: 0, price: 800 }], 800],
		["one at the product's price, one dearer", [{ sku: "A", stock: 1 }, { sku: "B", stock: 1, price: 1200 }], 1000],
	])("a product is listed from its cheapest variant: %s", (_what, variants, fromPrice) => {
		expect(newProductDoc({ name: "Tee", price: 1000, variants }, "tee", now).fromPrice).toBe(fromPrice);
	});

	test("images keep their order as positions; alt falls back to the product name", () => {
		expect(toStoredImages([{ url: "u1" }, { url: "u2", alt: "back" }], "Tee")).toEqual([
			{ url: "u1", alt: "Tee", position: 0 },
			{ url: "u2", alt: "back", position: 1 },
		]);
	});

	test.each([
		[{ sku: "A", stock: 2 }, { name: "Default", price: null, options: {} }],
		[{ sku: "A", stock: 2, options: { Size: "L", Color: "Red" } }, { name: "L / Red", price: null }],
		[{ sku: "A", stock: 2, name: "Large", price: 2500 }, { name: "Large", price: 2500 }],
	])("variant %j", (input, expected) => {
		expect(newVariantDoc(input, "p1", now)).toMatchObject({ productId: "p1", sku: "A", stock: 2, ...expected });
	});

	test.each([
		["apple lamp", "apple lamp"],
		["Équinoxe Lamp", "equinoxe lamp"],
		["Ærø", "aero"],
		["  Zebra ", "zebra"],
	])("name order key of %j is %j", (name, key) => expect(nameSortKey(name)).toBe(key));

	test("variant names: none derived twice in a product; a second one without options is named by its SKU", () => {
		expect(variantNamesFor([{ sku: "A" }, { sku: "B" }, { sku: "C", name: "Gift box" }, { sku: "D", options: { Size: "M" } }, { sku: "E", options: { Size: "M" } }])).toEqual(["Default", "B", "Gift box", "M", "E"]);
		// Against the product's names already stored; an admin's name is kept even when it repeats one.
		expect(variantNamesFor([{ sku: "F" }, { sku: "G", name: "Default" }], ["Default"])).toEqual(["F", "Default"]);
		expect(variantNamesFor([{ sku: "H", options: { Size: "L" } }], ["Default"])).toEqual(["L"]);
	});

	test.each([
		[{ name: "Default", sku: "A", options: {} }, true],
		[{ name: "L / Red", sku: "A", options: { Size: "L", Color: "Red" } }, true],
		[{ name: "A", sku: "A", options: {} }, true],
		[{ name: "Midnight", sku: "A", options: { Color: "Black" } }, false],
	])("%j has a derived name: %s", (v, derived) => expect(hasDerivedName(v)).toBe(derived));

	test.each([
		[{}, "Default"],
		[{ Size: "M" }, "M"],
		[{ Size: "M", Color: "Navy" }, "M / Navy"],
	])("variant name of %j is %s", (options, name) => expect(variantDisplayName(options)).toBe(name));
});

describe("compareAtProblem", () => {
	test.each([
		[1999, null, false],
		[1999, undefined, false],
		[1999, 2499, false],
		[1999, 1999, true],
		[1999, 999, true],
	])("price %d, compare-at %j → problem: %s", (price, compareAt, problem) => expect(compareAtProblem(price, compareAt) !== null).toBe(problem));
});
