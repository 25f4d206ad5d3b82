import { effectivePrice, mainImage, toProductSummary, toProductDetail, toVariantInfo, toProductRef, optionValues, toIndexDocument, type Product, type Variant } from "../../lib/catalog-views";

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
		expect(detail.variants[0]).toEqual({ id: "m-red", sku: "M-RED", name: "M / Red", price: 2000, options: { Size: "M", Color: "Red" }, stock: 3 });
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
	])("index document %s", (_what, vs, expected) => {
		const doc = toIndexDocument(product, vs, categories);
		expect(doc).toMatchObject({ ...expected, categoryPath: ["clothing", "t-shirts"], categoryNames: ["Clothing", "T-Shirts"], rating: { average: 4, count: 3 }, image: "first", price: 2000 });
	});
});
