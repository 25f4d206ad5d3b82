import { generateCatalog, demoProductRange, seededRandom, DEMO_PRODUCT_COUNT } from "../../lib/demo-catalog";
import { isSlug } from "../../lib/slug";

describe("demo catalog", () => {
	const catalog = generateCatalog();

	test("is the same every time", () => {
		expect(generateCatalog()).toEqual(catalog);
		expect(generateCatalog({ seed: 7 })).not.toEqual(catalog);
	});

	test("has at least 8 categories in two levels, and 60 products in the leaves", () => {
		const roots = catalog.categories.filter((c) => !c.parentId);
		const leaves = catalog.categories.filter((c) => c.parentId);
		expect(catalog.categories.length).toBeGreaterThanOrEqual(8);
		expect(roots.length).toBeGreaterThanOrEqual(2);
		expect(leaves.every((c) => roots.some((r) => r.id === c.parentId))).toBe(true);
		expect(catalog.products).toHaveLength(DEMO_PRODUCT_COUNT);
		expect(catalog.products.every((p) => leaves.some((c) => c.id === p.categoryId))).toBe(true);
	});

	test("slugs, SKUs and ids are unique and well-formed", () => {
		const big = generateCatalog({ products: 2000 });
		const slugs = big.products.map((p) => p.slug);
		expect(new Set(slugs).size).toBe(slugs.length);
		expect(slugs.every(isSlug)).toBe(true);
		const skus = big.variants.map((v) => v.sku);
		expect(new Set(skus).size).toBe(skus.length);
		const ids = [...big.categories, ...big.products, ...big.variants].map((x) => x.id);
		expect(new Set(ids).size).toBe(ids.length);
	});

	test("ids stay unique in a catalog of 60,000 products (ids drawn from each product's 32-bit stream collided from ~36,000)", () => {
		const big = generateCatalog({ products: 60_000 });
		const ids = [...big.categories, ...big.products, ...big.variants].map((x) => x.id);
		expect(new Set(ids).size).toBe(ids.length);
		expect(ids.every((id) => /^[A-Za-z0-9_-]{16}$/.test(id))).toBe(true);
	}, 30_000);

	test("prices are integer cents, compare-at prices above them, currencies ISO", () => {
		for (const p of catalog.products) {
			expect(Number.isInteger(p.price) && p.price > 0).toBe(true);
			if (p.compareAtPrice !== null) expect(p.compareAtPrice).toBeGreaterThan(p.price);
			expect(p.currency).toMatch(/^[A-Z]{3}$/);
		}
		for (const v of catalog.variants) {
			expect(v.price === null || Number.isInteger(v.price)).toBe(true);
			expect(Number.isInteger(v.stock) && v.stock >= 0).toBe(true);
		}
	});

	test("several products have size and colour variants, some variants are sold out, images are picsum URLs", () => {
		const byProduct = new Map<string, number>();
		for (const v of catalog.variants) byProduct.set(v.productId, (byProduct.get(v.productId) ?? 0) + 1);
		const sizeAndColor = catalog.products.filter((p) => catalog.variants.some((v) => v.productId === p.id && v.options.Size && v.options.Color));
		expect(sizeAndColor.length).toBeGreaterThanOrEqual(5);
		expect(catalog.products.every((p) => (byProduct.get(p.id) ?? 0) >= 1)).toBe(true);
		expect(catalog.variants.some((v) => v.stock === 0)).toBe(true);
		expect(catalog.variants.some((v) => v.price !== null)).toBe(true);
		for (const p of catalog.products) {
			expect(p.images.length).toBeGreaterThanOrEqual(1);
			expect(p.images[0].url).toBe(`https://picsum.photos/seed/${p.slug}/800/800`);
		}
	});

	test("a larger catalog begins with the demo one (product i depends only on seed and i)", () => {
		const range = demoProductRange(50, 60);
		expect(range.products).toEqual(catalog.products.slice(50, 60));
		expect(generateCatalog({ products: 100 }).products.slice(0, 60)).toEqual(catalog.products);
	});

	test("the random stream is deterministic and in [0, 1)", () => {
		const a = seededRandom(1);
		const b = seededRandom(1);
		const values = Array.from({ length: 1000 }, () => a());
		expect(values).toEqual(Array.from({ length: 1000 }, () => b()));
		expect(values.every((x) => x >= 0 && x < 1)).toBe(true);
	});
});
