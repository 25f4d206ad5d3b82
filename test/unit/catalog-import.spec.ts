import { newCatalogRows, type StoredCatalogKeys } from "../../lib/catalog-import";
import type { DemoCatalog } from "../../lib/demo-catalog";

const at = new Date("2025-01-01T00:00:00.000Z");
const category = (id: string, slug: string, parentId: string | null = null) => ({ id, name: slug, slug, parentId, description: "", position: 0, createdAt: at });
const product = (id: string, slug: string, categoryId: string | null) => ({
	id, name: slug, slug, description: "", categoryId, price: 1000, compareAtPrice: null, currency: "USD", images: [], isActive: true, rating: { average: 0, count: 0 }, createdAt: at, updatedAt: at,
});
const variant = (id: string, productId: string, sku: string, stock: number) => ({ id, productId, sku, name: sku, price: null, options: {}, stock, createdAt: at, updatedAt: at });

const catalog: DemoCatalog = {
	categories: [category("c-root", "clothing"), category("c-leaf", "shirts", "c-root")],
	products: [product("p1", "tee", "c-leaf"), product("p2", "polo", "c-leaf")],
	variants: [variant("v1", "p1", "TEE-S", 5), variant("v2", "p1", "TEE-M", 0), variant("v3", "p2", "POLO-S", 2)],
};
const nothingStored: StoredCatalogKeys = { categoryIds: new Map(), productSlugs: new Set(), skus: new Set() };
const ids = (rows: Array<{ id: string }>) => rows.map((r) => r.id);

describe("newCatalogRows", () => {
	test.each([
		["an empty store takes everything", nothingStored, { categories: ["c-root", "c-leaf"], products: ["p1", "p2"], variants: ["v1", "v2", "v3"] }],
		["stored categories are not inserted again", { ...nothingStored, categoryIds: new Map([["clothing", "old-root"], ["shirts", "old-leaf"]]) }, { categories: [], products: ["p1", "p2"], variants: ["v1", "v2", "v3"] }],
		["a stored product slug skips the product and all its variants", { ...nothingStored, productSlugs: new Set(["tee"]) }, { categories: ["c-root", "c-leaf"], products: ["p2"], variants: ["v3"] }],
		["a stored SKU skips only that variant", { ...nothingStored, skus: new Set(["TEE-M"]) }, { categories: ["c-root", "c-leaf"], products: ["p1", "p2"], variants: ["v1", "v3"] }],
		["a fully stored catalog adds nothing", { categoryIds: new Map([["clothing", "c-root"], ["shirts", "c-leaf"]]), productSlugs: new Set(["tee", "polo"]), skus: new Set(["TEE-S", "TEE-M", "POLO-S"]) }, { categories: [], products: [], variants: [] }],
	])("%s", (_name, stored, expected) => {
		const rows = newCatalogRows(catalog, stored, "seed");
		expect({ categories: ids(rows.categories), products: ids(rows.products), variants: ids(rows.variants) }).toEqual(expected);
	});

	test.each([
		["nothing stored: links stay inside the catalog", nothingStored, { leafParent: "c-root", productCategory: "c-leaf" }],
		["the root is stored: the new leaf points at the stored root", { ...nothingStored, categoryIds: new Map([["clothing", "old-root"]]) }, { leafParent: "old-root", productCategory: "c-leaf" }],
		["the leaf is stored: it is not inserted, and new products point at it", { ...nothingStored, categoryIds: new Map([["shirts", "old-leaf"]]) }, { leafParent: undefined, productCategory: "old-leaf" }],
	])("%s", (_name, stored, expected) => {
		const rows = newCatalogRows(catalog, stored, "seed");
		const leaf = rows.categories.find((c) => c.slug === "shirts");
		expect(leaf?.parentId).toBe(expected.leafParent);
		expect(rows.products.map((p) => p.categoryId)).toEqual([expected.productCategory, expected.productCategory]);
	});

	test("opening stock is a purchase row per new variant with stock, summing to its stock", () => {
		const { openingStock } = newCatalogRows(catalog, { ...nothingStored, skus: new Set(["POLO-S"]) }, "bench");
		expect(openingStock).toEqual([{ variantId: "v1", productId: "p1", delta: 5, type: "purchase", reference: "bench", stockAfter: 5, createdAt: at }]);
	});
});
