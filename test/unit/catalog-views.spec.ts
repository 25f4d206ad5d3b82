import { effectivePrice, fromPriceOf, fromPricesOf, wasPrice, mainImage, toProductSummary, toProductDetail, toVariantInfo, toProductRef, optionValues, toIndexDocument, type Product, type Variant } from "../../lib/catalog-views";

const createdAt = new Date("2025-01-01T00:00:00Z");
const product: Product = {
	id: "p1", name: "Tee", slug: "tee", description: "Soft", categoryId: "tees", price: 2000, compareAtPrice: 2500, currency: "USD",
	images: [{ url: "second", alt: "b", position: 1 }, { url: "first", alt: "a", position: 0 }],
	isActive: true, rating: { average: 4, count: 3 }, createdAt, updatedAt: createdAt,
};
const variant = (id: string, price: number | null, stock: number, options: Record<string, string>): Variant => ({ id, productId: "p1", sku: id.toUpperCase(), name: Object.values(options).join(" / "), price, stock, options });
const variants = [variant("m-red", null, 3, { Size: "M", Color: "Red" }), variant("xl-red", 2300, 0, { Size: "XL", Color: "Red" }), variant("m-blue", null, 2, { Size: "M", Color: "Blue" })];
const categories = [{ id: "clothing", name: "Clothing", slug: "clothing", parentId: null }, { id: "tees", name: "T-Shirts", slug: "t-shirts", parentId: "clothing" }];

describe("catalog views", () => {
	test.each([
		[null, 2000],
		[2300, 2300],
		[0, 0],
	])("a variant priced %j sells at %d", (price, expected) => expect(effectivePrice({ price }, product)).toBe(expected));

	test.each([
		["every variant at the product's price", [null, null], 2000],
		["a dearer variant beside one at the product's price", [null, 2300], 2000],
		["every variant dearer", [5000, 2300], 2300],
		["a cheaper variant", [5000, 800, null], 800],
		["a free variant", [0, null], 0],
		["no variants", [], 2000],
	])("the from price with %s", (_what, prices, expected) => {
		expect(fromPriceOf(product, prices.map((price) => ({ price })))).toBe(expected);
	});

	test("the from prices of several products, from their variants in any order", () => {
		const products = [{ id: "a", price: 1000 }, { id: "b", price: 3000 }, { id: "c", price: 700 }];
		const vs = [{ productId: "b", price: null }, { productId: "a", price: 5000 }, { productId: "b", price: 2500 }, { productId: "x", price: 1 }];
		expect(fromPricesOf(products, vs)).toEqual(new Map([["a", 5000], ["b", 2500], ["c", 700]]));
	});

	test.each([
		[null, 2000, null],
		[2500, 2000, 2500],
		[2500, 2500, null],
		[2500, 5000, null],
	])("a was price of %j beside %d shows as %j", (compareAtPrice, price, expected) => expect(wasPrice(compareAtPrice, price)).toBe(expected));

	test.each([
		["a dearer variant", 5000, null],
		["a cheaper variant, the was price above it", 800, 2500],
		["the product's price", 2000, 2500],
		["a variant at the was price", 2500, null],
	])("the listing row shows the from price (%s) and a was price only above it", (_what, fromPrice, compareAtPrice) => {
		expect(toProductSummary({ ...product, fromPrice })).toMatchObject({ price: fromPrice, compareAtPrice });
	});

	test("a listing row stored before the from price existed shows the product's price", () => {
		expect(toProductSummary(product)).toMatchObject({ price: 2000, compareAtPrice: 2500 });
	});

	test("the product page keeps the product's own price and was price; its variants their effective ones", () => {
		const detail = toProductDetail({ ...product, fromPrice: 5000 }, [variant("only", 5000, 1, {})], categories);
		expect(detail).toMatchObject({ price: 2000, compareAtPrice: 2500, fromPrice: 5000, variants: [{ price: 5000 }] });
	});

	test("each variant carries the product's was price only above what it sells at", () => {
		const detail = toProductDetail(product, [variant("a", 2000, 1, {}), variant("b", 2500, 1, {}), variant("c", 2900, 1, {})], categories);
		expect(detail.variants.map((v) => [v.price, v.compareAtPrice])).toEqual([[2000, 2500], [2500, null], [2900, null]]);
		expect(toProductDetail({ ...product, compareAtPrice: null }, variants, categories).variants.every((v) => v.compareAtPrice === null)).toBe(true);
	});

	test("the product page's from price comes from the variants it shows, not from a stale stored one", () => {
		expect(toProductDetail({ ...product, fromPrice: 9999 }, variants, categories).fromPrice).toBe(2000);
		expect(toProductDetail({ ...product, fromPrice: undefined }, [variant("only", 5000, 1, {})], categories).fromPrice).toBe(5000);
		expect(toProductDetail(product, [], categories).fromPrice).toBe(2000);
	});

	test("the main image is the one at position 0; none without images", () => {
		expect(mainImage(product)).toBe("first");
		expect(mainImage({ images: [] })).toBeNull();
	});

	test("the listing row carries no stock; a missing rating reads as zero", () => {
		const row = toProductSummary({ ...product, rating: undefined });
		expect(row).not.toHaveProperty("variants");
		expect(row).toMatchObject({ id: "p1", image: "first", rating: { average: 0, count: 0 }, compareAtPrice: 2500 });
	});

	test("the product page has variants at their effective price, the breadcrumb and inStock", () => {
		const detail = toProductDetail(product, variants, categories);
		expect(detail.variants[0]).toEqual({ id: "m-red", sku: "M-RED", name: "M / Red", price: 2000, compareAtPrice: 2500, options: { Size: "M", Color: "Red" }, stock: 3 });
		expect(detail.variants[1].price).toBe(2300);
		expect(detail.categoryPath.map((c) => c.slug)).toEqual(["clothing", "t-shirts"]);
		expect(detail.inStock).toBe(true);
		expect(toProductDetail(product, [variants[1]], categories).inStock).toBe(false);
	});

	test("getVariants and getMany shapes", () => {
		expect(toVariantInfo(variants[1], { ...product, isActive: false })).toEqual({
			id: "xl-red", productId: "p1", sku: "XL-RED", name: "XL / Red", productName: "Tee", productSlug: "tee",
			price: 2300, currency: "USD", stock: 0, options: { Size: "XL", Color: "Red" }, isActive: false, image: "first",
		});
		expect(toProductRef(product)).toEqual({ id: "p1", name: "Tee", slug: "tee", price: 2000, currency: "USD", image: "first", isActive: true });
	});

	test("a wishlist row shows the from price, as the listing row does", () => {
		expect(toProductRef({ ...product, fromPrice: 5000 }).price).toBe(5000);
	});

	test("option values are collected once each, in order of appearance", () => {
		expect(optionValues(variants)).toEqual({ Size: ["M", "XL"], Color: ["Red", "Blue"] });
		expect(optionValues([])).toEqual({});
	});

	test("option names that plain objects inherit (constructor, toString) are names like any other", () => {
		const values = optionValues([{ options: { constructor: "Red", toString: "x" } }, { options: { constructor: "Blue" } }]);
		expect(values).toEqual({ constructor: ["Red", "Blue"], toString: ["x"] });
		expect(Object.keys(values)).toEqual(["constructor", "toString"]);
	});

	test.each([
		["with variants", variants, { minPrice: 2000, maxPrice: 2300, stock: 5, inStock: true }],
		["all sold out", [variants[1]], { minPrice: 2300, maxPrice: 2300, stock: 0, inStock: false }],
		["without variants", [], { minPrice: 2000, maxPrice: 2000, stock: 0, inStock: false }],
		["all dearer than the product", [variant("a", 5000, 1, {}), variant("b", 3000, 0, {})], { minPrice: 3000, maxPrice: 5000, stock: 1, inStock: true }],
	])("index document %s", (_what, vs, expected) => {
		const doc = toIndexDocument(product, vs, categories);
		// Search and the listing agree on the from price.
		expect(doc.minPrice).toBe(fromPriceOf(product, vs));
		expect(doc).toMatchObject({ ...expected, categoryPath: ["clothing", "t-shirts"], categoryNames: ["Clothing", "T-Shirts"], rating: { average: 4, count: 3 }, image: "first", price: 2000 });
	});
});
