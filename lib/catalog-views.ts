/** What the catalog shows: stored products and variants turned into the shapes of API.md and docs/services.md. */
import { ancestorPath, type CategoryNode } from "./category-tree";
import type { ProductDoc, VariantDoc } from "./catalog-rules";

/** A stored product as read back: the document plus its id (older rows may lack rating/updatedAt). */
export type Product = Omit<ProductDoc, "id" | "rating" | "createdAt" | "updatedAt"> & {
	id: string;
	rating?: ProductDoc["rating"];
	createdAt: Date | string;
	updatedAt?: Date | string;
};

export type Variant = Omit<VariantDoc, "id" | "createdAt" | "updatedAt"> & { id: string };

/** A variant sells at its own price, or at the product's when it has none. */
export function effectivePrice(variant: Pick<Variant, "price">, product: Pick<Product, "price">): number {
	return variant.price ?? product.price;
}

export function mainImage(product: Pick<Product, "images">): string | null {
	const [first] = [...(product.images ?? [])].sort((a, b) => a.position - b.position);
	return first?.url ?? null;
}

export function ratingOf(product: Pick<Product, "rating">): { average: number; count: number } {
	return { average: product.rating?.average ?? 0, count: product.rating?.count ?? 0 };
}

/** A row of the product listing: no stock here, so stock changes never invalidate the cached listing. */
export function toProductSummary(p: Product) {
	return {
		id: p.id,
		name: p.name,
		slug: p.slug,
		description: p.description,
		categoryId: p.categoryId,
		price: p.price,
		compareAtPrice: p.compareAtPrice,
		currency: p.currency,
		image: mainImage(p),
		images: p.images,
		rating: ratingOf(p),
		isActive: p.isActive,
		createdAt: p.createdAt,
	};
}

export function toVariantView(v: Variant, p: Pick<Product, "price">) {
	return { id: v.id, sku: v.sku, name: v.name, price: effectivePrice(v, p), options: v.options ?? {}, stock: v.stock };
}

/** The product page: the summary plus its variants with current stock and the category breadcrumb. */
export function toProductDetail(p: Product, variants: Variant[], categories: CategoryNode[]) {
	const views = variants.map((v) => toVariantView(v, p));
	return {
		...toProductSummary(p),
		updatedAt: p.updatedAt,
		categoryPath: ancestorPath(categories, p.categoryId).map((c) => ({ id: c.id, name: c.name, slug: c.slug })),
		variants: views,
		inStock: views.some((v) => v.stock > 0),
	};
}

/** `products.getVariants`: what cart and orders need to price and show a line. */
export function toVariantInfo(v: Variant, p: Product) {
	return {
		id: v.id,
		productId: v.productId,
		sku: v.sku,
		name: v.name,
		productName: p.name,
		productSlug: p.slug,
		price: effectivePrice(v, p),
		currency: p.currency,
		stock: v.stock,
		options: v.options ?? {},
		isActive: p.isActive,
		image: mainImage(p),
	};
}

/** `products.getMany`: a product reference for wishlists and reviews. */
export function toProductRef(p: Product) {
	return { id: p.id, name: p.name, slug: p.slug, price: p.price, currency: p.currency, image: mainImage(p), isActive: p.isActive };
}

/** Every value each option takes over the variants: `{Size: ["S", "M"], Color: ["Red"]}`. */
export function optionValues(variants: Array<Pick<Variant, "options">>): Record<string, string[]> {
	// A Map: option names are the merchant's words, and "constructor" or "toString" would find a
	// plain object's inherited members.
	const out = new Map<string, string[]>();
	for (const v of variants) {
		for (const [name, value] of Object.entries(v.options ?? {})) {
			const list = out.get(name) ?? out.set(name, []).get(name)!;
			if (!list.includes(value)) list.push(value);
		}
	}
	return Object.fromEntries(out);
}

/** `products.listForIndex`: one document of the search index. */
export function toIndexDocument(p: Product, variants: Variant[], categories: Map<string, CategoryNode> | CategoryNode[]) {
	const path = ancestorPath(categories, p.categoryId);
	const prices = variants.length ? variants.map((v) => effectivePrice(v, p)) : [p.price];
	const stock = variants.reduce((sum, v) => sum + Math.max(0, v.stock), 0);
	return {
		id: p.id,
		name: p.name,
		slug: p.slug,
		description: p.description,
		categoryId: p.categoryId,
		categoryPath: path.map((c) => c.slug),
		categoryNames: path.map((c) => c.name),
		price: p.price,
		currency: p.currency,
		minPrice: Math.min(...prices),
		maxPrice: Math.max(...prices),
		inStock: stock > 0,
		stock,
		options: optionValues(variants),
		rating: ratingOf(p),
		image: mainImage(p),
		createdAt: p.createdAt,
	};
}
