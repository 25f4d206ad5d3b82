/**
 * The demo catalog: categories in two levels, products with size/colour variants, stock and image
 * URLs. Generated from a seed, so every start (and every benchmark) sees the same shop; product
 * number i depends only on (seed, i), so a large catalog begins with the demo one.
 */
import crypto from "node:crypto";
import type { ProductDoc, VariantDoc } from "./catalog-rules";
import { slugify } from "./slug";

export const DEMO_PRODUCT_COUNT = 60;
export const DEMO_SEED = 20240601;
const DEFAULT_CREATED_FROM = new Date("2025-01-01T00:00:00.000Z");

export interface DemoCategory {
	id: string;
	name: string;
	slug: string;
	parentId: string | null;
	description: string;
	position: number;
	createdAt: Date;
}
export type DemoProduct = ProductDoc & { id: string };
export type DemoVariant = VariantDoc & { id: string };

export interface DemoCatalog {
	categories: DemoCategory[];
	products: DemoProduct[];
	variants: DemoVariant[];
}

/** mulberry32: small, fast, good enough for demo data, and the same on every platform. */
export function seededRandom(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/** Mixes a seed and an index into one 32-bit seed (so product i has its own stream). */
function mix(seed: number, index: number): number {
	let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
	h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
	h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
	return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The id of the record `key` names (its kind, the catalog's seed, its number): 96 bits of a hash.
 * Drawn from a product's random stream, ids collided above ~36,000 products (mulberry32 has 32 bits of
 * state, and one product's stream can run into another's), which stopped a large seed half-way. The 16
 * draws an id took are still taken, so the rest of each product (prices, stock) stays as it was.
 */
function seededId(rand: () => number, key: string): string {
	for (let i = 0; i < 16; i++) rand();
	return crypto.createHash("sha256").update(key).digest("base64url").slice(0, 16);
}

type VariantScheme = { sizes?: string[]; colors?: string[]; scents?: string[]; upcharge?: { size: string; cents: number } };

interface LeafSpec {
	name: string;
	code: string;
	nouns: string[];
	dollars: [number, number];
	scheme: VariantScheme;
}

const APPAREL_SIZES = ["S", "M", "L", "XL"];
const APPAREL_COLORS = ["Black", "White", "Navy", "Red", "Olive", "Grey"];
const SHOE_SIZES = ["40", "41", "42", "43", "44"];

const TREE: Array<{ name: string; description: string; leaves: LeafSpec[] }> = [
	{
		name: "Clothing",
		description: "Everyday wear in sizes S to XL.",
		leaves: [
			{ name: "T-Shirts", code: "TS", nouns: ["Crew Tee", "V-Neck Tee", "Pocket Tee", "Long Sleeve Tee", "Graphic Tee"], dollars: [15, 35], scheme: { sizes: APPAREL_SIZES, colors: APPAREL_COLORS } },
			{ name: "Hoodies", code: "HD", nouns: ["Pullover Hoodie", "Zip Hoodie", "Crewneck Sweatshirt", "Fleece Hoodie", "Half-Zip"], dollars: [40, 80], scheme: { sizes: APPAREL_SIZES, colors: APPAREL_COLORS, upcharge: { size: "XL", cents: 300 } } },
			{ name: "Jeans", code: "JN", nouns: ["Straight Jeans", "Slim Jeans", "Carpenter Jeans", "Wide-Leg Jeans", "Tapered Jeans"], dollars: [50, 120], scheme: { sizes: APPAREL_SIZES } },
			{ name: "Jackets", code: "JK", nouns: ["Denim Jacket", "Rain Shell", "Bomber Jacket", "Puffer Jacket", "Field Jacket"], dollars: [80, 250], scheme: { sizes: APPAREL_SIZES, colors: APPAREL_COLORS, upcharge: { size: "XL", cents: 500 } } },
		],
	},
	{
		name: "Footwear",
		description: "Shoes and boots in EU sizes.",
		leaves: [
			{ name: "Sneakers", code: "SN", nouns: ["Court Sneaker", "Runner", "High-Top", "Slip-On", "Trail Runner"], dollars: [60, 180], scheme: { sizes: SHOE_SIZES, colors: ["White", "Black", "Grey"] } },
			{ name: "Boots", code: "BT", nouns: ["Chelsea Boot", "Hiking Boot", "Work Boot", "Chukka", "Winter Boot"], dollars: [90, 220], scheme: { sizes: SHOE_SIZES } },
		],
	},
	{
		name: "Accessories",
		description: "Bags, hats and watches.",
		leaves: [
			{ name: "Bags", code: "BG", nouns: ["Tote Bag", "Backpack", "Messenger Bag", "Duffel", "Crossbody Bag"], dollars: [30, 150], scheme: { colors: ["Black", "Tan", "Olive", "Navy"] } },
			{ name: "Hats", code: "HT", nouns: ["Beanie", "Baseball Cap", "Bucket Hat", "Wool Fedora", "Sun Hat"], dollars: [15, 40], scheme: { colors: ["Black", "Grey", "Navy", "Red"] } },
			{ name: "Watches", code: "WT", nouns: ["Field Watch", "Dive Watch", "Chronograph", "Dress Watch", "Digital Watch"], dollars: [80, 400], scheme: { colors: ["Silver", "Black", "Gold"] } },
		],
	},
	{
		name: "Home & Living",
		description: "Small things for the home.",
		leaves: [
			{ name: "Mugs", code: "MG", nouns: ["Coffee Mug", "Travel Mug", "Espresso Cup", "Tea Mug", "Camp Mug"], dollars: [8, 24], scheme: {} },
			{ name: "Posters", code: "PS", nouns: ["Mountain Poster", "City Map Poster", "Botanical Print", "Retro Poster", "Ocean Print"], dollars: [15, 60], scheme: { sizes: ["A3", "A2", "A1"], upcharge: { size: "A1", cents: 1000 } } },
			{ name: "Candles", code: "CD", nouns: ["Soy Candle", "Pillar Candle", "Tin Candle", "Taper Set", "Jar Candle"], dollars: [12, 35], scheme: { scents: ["Vanilla", "Cedar", "Lavender", "Fig"] } },
		],
	},
];

const ADJECTIVES = ["Classic", "Essential", "Organic", "Vintage", "Everyday", "Heavyweight", "Lightweight", "Relaxed", "Premium", "Urban", "Coastal", "Alpine"];
const MATERIALS = ["organic cotton", "recycled polyester", "merino wool", "canvas", "full-grain leather", "linen", "stoneware", "soy wax", "stainless steel"];

function pick<T>(rand: () => number, list: readonly T[]): T {
	return list[Math.floor(rand() * list.length)];
}

function subset<T>(rand: () => number, list: readonly T[], min: number, max: number): T[] {
	const count = min + Math.floor(rand() * (max - min + 1));
	const pool = [...list];
	const out: T[] = [];
	while (out.length < count && pool.length) out.push(pool.splice(Math.floor(rand() * pool.length), 1)[0]);
	return out;
}

interface Leaf extends LeafSpec {
	category: DemoCategory;
	index: number;
}

/** The category tree (the same for every catalog size) and its leaves, where products live. */
export function demoCategories(seed = DEMO_SEED, createdAt = DEFAULT_CREATED_FROM): { categories: DemoCategory[]; leaves: Leaf[] } {
	const rand = seededRandom(mix(seed, -1));
	const categories: DemoCategory[] = [];
	const leaves: Leaf[] = [];
	TREE.forEach((root, rootPos) => {
		const parent: DemoCategory = { id: seededId(rand, `${seed}:category:${root.name}`), name: root.name, slug: slugify(root.name), parentId: null, description: root.description, position: rootPos, createdAt };
		categories.push(parent);
		root.leaves.forEach((leaf, pos) => {
			const category: DemoCategory = { id: seededId(rand, `${seed}:category:${root.name}/${leaf.name}`), name: leaf.name, slug: slugify(leaf.name), parentId: parent.id, description: `${leaf.name} from the ${root.name.toLowerCase()} range.`, position: pos, createdAt };
			categories.push(category);
			leaves.push({ ...leaf, category, index: leaves.length });
		});
	});
	return { categories, leaves };
}

function priceCents(rand: () => number, [lo, hi]: [number, number]): number {
	// Whole dollars minus a cent (24.99), the way shops price.
	return (lo + Math.floor(rand() * (hi - lo + 1))) * 100 - 1;
}

function variantCombos(rand: () => number, scheme: VariantScheme): Array<Record<string, string>> {
	const sizes = scheme.sizes ?? [undefined];
	const colors = scheme.colors ? subset(rand, scheme.colors, 1, 2) : scheme.scents ? subset(rand, scheme.scents, 2, 3) : [undefined];
	const colorKey = scheme.scents ? "Scent" : "Color";
	const combos: Array<Record<string, string>> = [];
	for (const size of sizes) {
		for (const color of colors) {
			const options: Record<string, string> = {};
			if (size) options.Size = size;
			if (color) options[colorKey] = color;
			combos.push(options);
		}
	}
	return combos;
}

function skuPart(value: string): string {
	return value.replace(/[^A-Za-z0-9]/g, "").slice(0, 3).toUpperCase();
}

/** Product number `i` of the catalog with its variants. */
export function demoProduct(i: number, leaves: Leaf[], seed = DEMO_SEED, createdFrom = DEFAULT_CREATED_FROM): { product: DemoProduct; variants: DemoVariant[] } {
	const rand = seededRandom(mix(seed, i));
	const leaf = leaves[i % leaves.length];
	const k = Math.floor(i / leaves.length);
	const combos = leaf.nouns.length * ADJECTIVES.length;
	const noun = leaf.nouns[k % leaf.nouns.length];
	const adjective = ADJECTIVES[(Math.floor((k % combos) / leaf.nouns.length) + leaf.index) % ADJECTIVES.length];
	const edition = Math.floor(k / combos);
	const name = `${adjective} ${noun}${edition ? ` No. ${edition + 1}` : ""}`;
	const slug = slugify(name);
	const material = pick(rand, MATERIALS);
	const price = priceCents(rand, leaf.dollars);
	const onSale = rand() < 0.2;
	const createdAt = new Date(createdFrom.getTime() + i * 3_600_000);
	const imageCount = 1 + Math.floor(rand() * 3);
	const product: DemoProduct = {
		id: seededId(rand, `${seed}:product:${i}`),
		name,
		slug,
		description: `${adjective} ${noun.toLowerCase()} in ${material}. Part of our ${leaf.name.toLowerCase()} collection.`,
		categoryId: leaf.category.id,
		price,
		compareAtPrice: onSale ? price + Math.max(1, Math.round((price * 0.25) / 100)) * 100 : null,
		currency: "USD",
		images: Array.from({ length: imageCount }, (_, n) => ({
			url: `https://picsum.photos/seed/${slug}${n ? `-${n + 1}` : ""}/800/800`,
			alt: n ? `${name}, view ${n + 1}` : name,
			position: n,
		})),
		isActive: true,
		rating: { average: 0, count: 0 },
		createdAt,
		updatedAt: createdAt,
	};
	const skuBase = `${leaf.code}-${String(i + 1).padStart(5, "0")}`;
	const variants = variantCombos(rand, leaf.scheme).map((options, n): DemoVariant => {
		const values = Object.values(options);
		const upcharge = leaf.scheme.upcharge && options.Size === leaf.scheme.upcharge.size ? leaf.scheme.upcharge.cents : 0;
		return {
			id: seededId(rand, `${seed}:variant:${i}:${n}`),
			productId: product.id,
			sku: [skuBase, ...values.map(skuPart)].join("-"),
			name: values.length ? values.join(" / ") : "Default",
			price: upcharge ? price + upcharge : null,
			options,
			// Some variants sold out, so the shop shows both states.
			stock: rand() < 0.1 ? 0 : 1 + Math.floor(rand() * 40),
			createdAt,
			updatedAt: createdAt,
		};
	});
	return { product, variants };
}

export interface CatalogOptions {
	products?: number;
	seed?: number;
	createdFrom?: Date;
}

/** Products `from` (inclusive) to `to` (exclusive): lets the seed script write a large catalog in batches. */
export function demoProductRange(from: number, to: number, opts: CatalogOptions = {}): { products: DemoProduct[]; variants: DemoVariant[] } {
	const { leaves } = demoCategories(opts.seed, opts.createdFrom);
	const products: DemoProduct[] = [];
	const variants: DemoVariant[] = [];
	for (let i = from; i < to; i++) {
		const p = demoProduct(i, leaves, opts.seed, opts.createdFrom);
		products.push(p.product);
		variants.push(...p.variants);
	}
	return { products, variants };
}

/** The whole catalog: 60 products by default. */
export function generateCatalog(opts: CatalogOptions = {}): DemoCatalog {
	const { categories } = demoCategories(opts.seed, opts.createdFrom);
	return { categories, ...demoProductRange(0, opts.products ?? DEMO_PRODUCT_COUNT, opts) };
}
