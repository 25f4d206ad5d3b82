/**
 * Catalog and inventory: categories, products, variants, and stock that never oversells.
 * Stock moves only through one atomic conditional update per variant (`stock >= qty`, then
 * decrement), and every move writes an audit row and emits `inventory.changed`. A reservation's
 * moves also record a hold on the variant in that same update, so a sweeper can finish or roll
 * back what a crash left half done (the invariant is in lib/inventory-rules.ts). The stock actions
 * are declared here; their ledger and the sweeper are in mixins/inventory.mixin.ts. The category
 * actions are in mixins/catalog-categories.mixin.ts.
 */
import crypto from "node:crypto";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type {} from "moleculer-web";
import { HeldEventsMixin, type HeldEventsMethods } from "../mixins/held-events.mixin";
import { DbMixin } from "../mixins/db.mixin";
import type { Collection, CollectionSpec } from "../mixins/collection";
import { HealthMixin } from "../mixins/health.mixin";
import { OutboxConsumerMixin } from "../mixins/outbox-consumer.mixin";
import { CatalogCategoriesMixin, type CatalogCategoryHostMethods } from "../mixins/catalog-categories.mixin";
import { InventoryMixin, withOpeningStock, type InventoryDb, type InventoryMethods, type ParkedMove, type Row } from "../mixins/inventory.mixin";
import type { ShopMeta } from "../mixins/types";
import { readConfig } from "../lib/config";
import { ConflictError, InsufficientStockError, NotFoundError, ServiceUnavailableError, invalidField, isDuplicate } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { multilineRule, oneLineRule } from "../lib/param-rules";
import { slugify, slugFamilyPattern, uniqueSlug } from "../lib/slug";
import { descendantIds, type Category } from "../lib/category-tree";
import { centsRule, currencyRule, currencyFilterRule, priceFilterRule, slugRule, optionsRule, imageRule, variantRule, duplicateSkus, hasDerivedName, nameSortKey, newProductDoc, newVariantDoc, variantNamesFor, toStoredImages, compareAtProblem, findCategoryRef, variantDisplayName, type ProductInput, type VariantInput } from "../lib/catalog-rules";
import { toProductDetail, toProductSummary, toVariantInfo, toProductRef, toIndexDocument, fromPriceOf, fromPricesOf, type Product, type Variant } from "../lib/catalog-views";
import { PRODUCT_SORTS, productListQuery, productListSort, type ProductSort } from "../lib/catalog-query";
import { checkLines, type StockLine } from "../lib/inventory-rules";
import { generateCatalog, type DemoCatalog } from "../lib/demo-catalog";
import { newCatalogRows } from "../lib/catalog-import";
import { productRatingUpdate } from "../lib/rating-summary";
import { absentOr } from "../lib/store-queries";

/** The products service's collections; the seed script and tests open the same specs. */
export const productCollections: Record<keyof ProductDb, CollectionSpec> = {
	categories: {
		fields: { name: String, slug: String, parentId: { type: String, default: null }, description: String, position: Number, createdAt: Date, updatedAt: Date },
		indexes: [{ fields: { slug: 1 }, unique: true }, { fields: { parentId: 1 } }],
	},
	products: {
		// `fromPrice`: the least over the variants' prices, which the listing shows, filters and sorts by
		// (see refreshFromPrice); `fromPriceVersion` counts its writes.
		fields: {
			name: String, sortName: String, slug: String, formerSlugs: { type: [String], default: undefined }, description: String, categoryId: { type: String, default: null },
			price: Number, fromPrice: Number, fromPriceVersion: Number, compareAtPrice: { type: Number, default: null }, currency: String,
			images: [{ _id: false, url: String, alt: String, position: Number }],
			isActive: Boolean, rating: { average: Number, count: Number }, ratingVersion: Number, createdAt: Date, updatedAt: Date, archivedAt: Date,
			// A product being created: hidden until its variants (`skus`) and their opening stock are stored (see create).
			// `skus` has no default: mongoose would give every product an empty one, and so a `creating`.
			creating: { since: Number, variants: Number, skus: { type: [String], default: undefined } },
		},
		indexes: [{ fields: { slug: 1 }, unique: true }, { fields: { categoryId: 1 } }, { fields: { fromPrice: 1 } }, { fields: { sortName: 1 } }, { fields: { formerSlugs: 1 }, sparse: true }, { fields: { createdAt: 1 } }, { fields: { "creating.since": 1 }, sparse: true }],
	},
	variants: {
		// `holds`: {reservationId: quantity} of the reservations whose stock is out (see lib/inventory-rules.ts).
		// `pendingMove`: a stock change outside reservations whose audit row is being written (see moveStock in mixins/inventory.mixin.ts);
		// `since` is in epoch ms because NeDB's sparse indexes leave out every Date-valued key.
		fields: { productId: String, sku: String, name: String, price: { type: Number, default: null }, options: { type: Object, default: {} }, stock: Number, holds: Object, pendingMove: Object, createdAt: Date, updatedAt: Date },
		indexes: [{ fields: { sku: 1 }, unique: true }, { fields: { productId: 1 } }, { fields: { "pendingMove.since": 1 }, sparse: true }],
	},
	inventory_transactions: {
		// `key` names a reservation line's movement, so recovery can write a missing row without doubling it;
		// `recovered` rows were written by the sweeper after a crash (their stockAfter is the stock it saw).
		fields: { variantId: String, productId: String, delta: Number, quantity: Number, type: String, reference: String, stockAfter: Number, userId: String, key: String, recovered: Boolean, createdAt: Date },
		indexes: [{ fields: { variantId: 1 } }, { fields: { key: 1 }, unique: true, sparse: true }],
		loadInBackground: true,
	},
	// One record per order: its status changes by conditional updates, so duplicate calls apply once.
	reservations: {
		// `holdsOpen` while some variant may still hold stock for it or its audit rows may be incomplete.
		// `runner`: the node run whose reserve applies its lines, so a sweeper knows it is over once that node came back as a new run.
		fields: { orderId: String, status: String, items: { type: Array, default: [] }, holdsOpen: Boolean, returnOpen: Boolean, reason: String, runner: Object, createdAt: Date, updatedAt: Date },
		indexes: [{ fields: { orderId: 1 }, unique: true }, { fields: { holdsOpen: 1, updatedAt: 1 } }],
	},
};

/** Set on a product while it is being created (see create); `skus` are the variants it is created with. */
interface Creating {
	since: number;
	variants: number;
	/** Absent on products whose creation began before it was recorded: then `variants` counts them. */
	skus?: string[];
}

/**
 * No admin change lands on a product still being created: whether it goes on sale or is undone is
 * not decided yet (its request is running, or a crash cut it short and the sweeper decides within
 * minutes), and an archive, edit or new variant now would be overridden or lost by that decision.
 */
function refuseWhileCreating(product: Row<Product> & { creating?: Creating }) {
	if (product.creating) throw new ConflictError("The product is still being created; try again in a few minutes", "PRODUCT_BEING_CREATED", { productId: product.id });
}

interface ProductDb extends InventoryDb {
	categories: Collection<Row<Category>>;
}

interface ProductSettings extends ServiceSettingSchema {
	rest: string;
	/** InventoryMixin's: a reserve, movement or creation untouched this long was interrupted. */
	reservationSweep?: { staleAfterMs: number; intervalMs: number };
}

/** Writes a generated catalog, skipping slugs and SKUs already stored (re-runs add only what is new). */
export async function writeCatalog(db: ProductDb, catalog: DemoCatalog, reference = "seed"): Promise<{ products: number; variants: number }> {
	const stored = {
		categoryIds: new Map((await db.categories.find({ slug: { $in: catalog.categories.map((c) => c.slug) } }, { fields: ["slug"] })).map((c) => [c.slug, c.id])),
		productSlugs: new Set((await db.products.find({ slug: { $in: catalog.products.map((p) => p.slug) } }, { fields: ["slug"] })).map((p) => p.slug)),
		skus: new Set((await db.variants.find({ sku: { $in: catalog.variants.map((v) => v.sku) } }, { fields: ["sku"] })).map((v) => v.sku)),
	};
	const { categories, products, variants, openingStock } = newCatalogRows(catalog, stored, reference);
	// Each product is new, so the variants written with it are all it has.
	const fromPrices = fromPricesOf(products, variants);
	const listed = products.map((p) => ({ ...p, sortName: nameSortKey(p.name), fromPrice: fromPrices.get(p.id) }));
	if (categories.length) await db.categories.insertMany(categories);
	if (listed.length) await db.products.insertMany(listed);
	if (variants.length) await db.variants.insertMany(variants);
	if (openingStock.length) await db.inventory_transactions.insertMany(openingStock);
	return { products: products.length, variants: variants.length };
}

interface Methods extends InventoryMethods, CatalogCategoryHostMethods, HeldEventsMethods {
	announce(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<void>;
	assertCategory(categoryId: string | null | undefined): Promise<void>;
	findProduct(idOrSlug: string): Promise<Row<Product> | null>;
	touchProduct(productId: string): Promise<Row<Product> | null>;
	productDetail(product: Row<Product>): Promise<ReturnType<typeof toProductDetail>>;
	refreshFromPrice(productId: string): Promise<void>;
	changingFromPrice<T>(productId: string, change: () => Promise<T>): Promise<T>;
	fillMissingFromPrices(): Promise<number>;
	fillMissingSortNames(): Promise<number>;
	storeRating(event: string, payload: unknown, ctx: Context | null): Promise<void>;
	finishCreation(ctx: Context | null, productId: string): Promise<Row<Product> | null>;
	finishInterruptedCreations(staleAfterMs?: number): Promise<{ finished: number; undone: number }>;
}
interface Vars {
	db: ProductDb;
	cleanCache(): Promise<void>;
}
type Ctx<P = Record<string, never>> = Context<P, ShopMeta>;

const stockLine = { type: "object", strict: "remove", props: { variantId: "string", quantity: { type: "number", integer: true, min: 1, max: 10_000 } } } as const;
const idList = { type: "array", items: "string", max: 1000 } as const;

const ProductsService: ServiceSchema<ProductSettings, Methods, Vars> = {
	name: "products",
	// The outbox consumer and InventoryMixin before DbMixin: they stop before it closes the collections.
	mixins: [
		// A rating moderated while no products node ran is caught up from the reviews outbox.
		OutboxConsumerMixin({ cursors: "products_cursors", sources: { reviews: ["review.moderated"] }, handler: "storeRating" }),
		InventoryMixin,
		DbMixin("products", productCollections),
		HealthMixin,
		CatalogCategoriesMixin,
		HeldEventsMixin as Partial<ServiceSchema>,
	],
	settings: { rest: "/" },

	actions: {
		// ---------- products ----------
		list: {
			rest: "GET /products",
			openapi: { response: { list: "ProductSummary" } },
			// Listing rows carry no stock, so only catalog writes (which clean the cache) change them.
			cache: { keys: ["category", "currency", "minPrice", "maxPrice", "sort", "page", "pageSize"] },
			publicCache: true,
			params: {
				$$strict: "remove",
				category: { type: "string", optional: true },
				currency: currencyFilterRule,
				minPrice: priceFilterRule,
				maxPrice: priceFilterRule,
				sort: { type: "enum", values: Object.keys(PRODUCT_SORTS), optional: true },
				...pageParams,
			},
			async handler(ctx: Ctx<{ category?: string; currency?: string; minPrice?: number; maxPrice?: number; sort?: ProductSort; page?: number; pageSize?: number }>) {
				const { category, currency, minPrice, maxPrice, sort } = ctx.params;
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				let categoryIds: string[] | undefined;
				if (category) {
					const all = await this.loadCategories();
					// As search reads it: a slug in any case, or an id.
					const root = findCategoryRef(all, category);
					categoryIds = root ? descendantIds(all, root.id) : [];
				}
				const query = productListQuery({ categoryIds, currency, minPrice, maxPrice });
				const [rows, total] = await this.db.products.findWithCount(query, { sort: productListSort(sort), offset: w.offset, limit: w.limit });
				return toPage(rows.map(toProductSummary), total, w.page, w.pageSize);
			},
		},

		// Not cached: it shows live stock.
		get: {
			rest: "GET /products/:idOrSlug",
			openapi: { response: "Product" },
			auth: "optional",
			params: { $$strict: "remove", idOrSlug: { type: "string", min: 1 } },
			async handler(ctx: Ctx<{ idOrSlug: string }>) {
				const product = await this.findProduct(ctx.params.idOrSlug);
				// Archived products stay readable for admins (past orders link to them), not for shoppers.
				if (!product || (!product.isActive && ctx.meta.user?.role !== "admin")) throw new NotFoundError("Product");
				// A HEAD (a monitor, a link checker) is nobody viewing the product, nor is the staff's own look at it.
				if (!ctx.meta.headRequest && ctx.meta.user?.role !== "admin") {
					await this.emitCounted(ctx, "product.viewed", { productId: product.id, ...(ctx.meta.user ? { userId: ctx.meta.user.id } : {}), eventId: crypto.randomUUID() });
				}
				return this.productDetail(product);
			},
		},

		create: {
			rest: "POST /products",
			openapi: { success: 201, response: "Product", responses: { 409: "SKU or slug already in use" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				name: { type: "string", trim: true, min: 1, max: 200, ...oneLineRule },
				slug: { ...slugRule, optional: true },
				description: { type: "string", max: 10_000, optional: true, ...multilineRule },
				categoryId: { type: "string", min: 1, optional: true, nullable: true },
				price: centsRule,
				compareAtPrice: { ...centsRule, optional: true, nullable: true },
				currency: { ...currencyRule, optional: true },
				images: { type: "array", items: imageRule, max: 20, optional: true },
				variants: { type: "array", items: variantRule, min: 1, max: 200 },
			},
			async handler(ctx: Ctx<ProductInput>) {
				const input = ctx.params;
				const problem = compareAtProblem(input.price, input.compareAtPrice);
				if (problem) throw invalidField("compareAtPrice", problem);
				await this.assertCategory(input.categoryId);
				const skus = input.variants.map((v) => v.sku);
				const clash = [...duplicateSkus(input.variants), ...(await this.db.variants.find({ sku: { $in: skus } }, { fields: ["sku"] })).map((v) => v.sku)];
				if (clash.length) throw new ConflictError("SKU already in use", "DUPLICATE", { field: "sku", skus: [...new Set(clash)] });
				let slug = input.slug;
				if (slug) await this.assertSlugFree(this.db.products, slug);
				else slug = await this.freeSlug(this.db.products, input.name);

				const now = new Date();
				// Hidden until whole: a crash part-way is finished or undone by finishInterruptedCreations.
				const creating: Creating = { since: now.getTime(), variants: input.variants.length, skus };
				const product = await this.db.products.insert({ ...newProductDoc(input, slug, now), isActive: false, creating });
				let variants: Row<Variant>[];
				try {
					const names = variantNamesFor(input.variants);
					variants = await this.db.variants.insertMany(input.variants.map((v, i) => withOpeningStock(newVariantDoc(v, product.id, now, names[i]), now)));
				} catch (err) {
					// All or nothing: a product never stays behind without its variants (e.g. a SKU taken meanwhile).
					await this.db.variants.removeMany({ productId: product.id });
					await this.db.products.removeOne({ id: product.id });
					throw err;
				}
				// Opening stock is a purchase, parked on each variant as it is stored: its audit row is written
				// now, or by the sweeper after a crash, so the trail of every variant sums to its stock.
				for (const v of variants as Array<Row<Variant> & { pendingMove?: ParkedMove }>) if (v.pendingMove) await this.finishMove(ctx, v, v.pendingMove);
				const created = (await this.finishCreation(ctx, product.id))!;
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/products/${product.id}`;
				return this.productDetail(created);
			},
		},

		update: {
			rest: "PATCH /products/:id",
			openapi: { response: "Product", responses: { 409: "Slug already in use, or the product is still being created (PRODUCT_BEING_CREATED)" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				name: { type: "string", trim: true, min: 1, max: 200, optional: true, ...oneLineRule },
				slug: { ...slugRule, optional: true },
				description: { type: "string", max: 10_000, optional: true, ...multilineRule },
				categoryId: { type: "string", min: 1, optional: true, nullable: true },
				price: { ...centsRule, optional: true },
				compareAtPrice: { ...centsRule, optional: true, nullable: true },
				currency: { ...currencyRule, optional: true },
				images: { type: "array", items: imageRule, max: 20, optional: true },
				isActive: { type: "boolean", optional: true },
			},
			async handler(ctx: Ctx<Partial<ProductInput> & { id: string; isActive?: boolean }>) {
				const { id, images, ...changes } = ctx.params;
				const current = await this.db.products.findById(id);
				if (!current) throw new NotFoundError("Product");
				refuseWhileCreating(current);
				const problem = compareAtProblem(changes.price ?? current.price, changes.compareAtPrice === undefined ? current.compareAtPrice : changes.compareAtPrice);
				if (problem) throw invalidField("compareAtPrice", problem);
				if (changes.categoryId !== undefined) await this.assertCategory(changes.categoryId);
				if (changes.slug && changes.slug !== current.slug) await this.assertSlugFree(this.db.products, changes.slug, id);
				const set: Record<string, unknown> = { ...changes, updatedAt: new Date() };
				if (changes.name !== undefined) set.sortName = nameSortKey(changes.name);
				// Links to the old slug keep finding the product (its page answers with the new slug), unless another product takes it.
				const update: Record<string, unknown> = { $set: set };
				if (changes.slug && changes.slug !== current.slug) update.$addToSet = { formerSlugs: current.slug };
				if (images) set.images = toStoredImages(images, changes.name ?? current.name);
				if (changes.isActive === false && current.isActive) set.archivedAt = new Date();
				const write = () => this.db.products.updateById(id, update) as Promise<Row<Product>>;
				// Variants without a price of their own sell at the product's.
				const updated = changes.price !== undefined ? await this.changingFromPrice(id, write) : await write();
				await this.cleanCache();
				await this.announce(ctx, current.isActive && !updated.isActive ? "product.archived" : "product.updated", { productId: id });
				return this.productDetail(updated);
			},
		},

		// Archive, never delete: past orders keep pointing at the product.
		archive: {
			rest: "DELETE /products/:id",
			openapi: { response: "ProductSummary", responses: { 409: "The product is still being created (PRODUCT_BEING_CREATED)" } },
			roles: ["admin"],
			params: { $$strict: "remove", id: "string" },
			async handler(ctx: Ctx<{ id: string }>) {
				for (let attempt = 1; ; attempt++) {
					const now = new Date();
					const archived = await this.db.products.updateOne({ id: ctx.params.id, isActive: true }, { $set: { isActive: false, archivedAt: now, updatedAt: now } });
					if (archived) {
						await this.cleanCache();
						await this.announce(ctx, "product.archived", { productId: archived.id });
						return toProductSummary(archived);
					}
					const product = await this.db.products.findById(ctx.params.id);
					if (!product) throw new NotFoundError("Product");
					refuseWhileCreating(product);
					// On sale again: its creation finished (or another admin relisted it) since the update above; archive it after all.
					if (!product.isActive || attempt === 3) return toProductSummary(product);
				}
			},
		},

		addVariant: {
			rest: "POST /products/:id/variants",
			openapi: { success: 201, response: "Product", responses: { 409: "SKU already in use, or the product is still being created (PRODUCT_BEING_CREATED)" } },
			roles: ["admin"],
			params: { $$strict: "remove", id: "string", ...variantRule.props },
			async handler(ctx: Ctx<VariantInput & { id: string }>) {
				const { id, ...input } = ctx.params;
				const product = await this.db.products.findById(id);
				if (!product) throw new NotFoundError("Product");
				refuseWhileCreating(product);
				if (await this.db.variants.findOne({ sku: input.sku })) throw new ConflictError("SKU already in use", "DUPLICATE", { field: "sku", skus: [input.sku] });
				const now = new Date();
				const [name] = variantNamesFor([input], (await this.db.variants.find({ productId: id }, { fields: ["name"] })).map((v) => v.name));
				const variant = (await this.changingFromPrice(id, () => this.db.variants.insert(withOpeningStock(newVariantDoc(input, id, now, name), now)))) as Row<Variant> & { pendingMove?: ParkedMove };
				if (variant.pendingMove) await this.finishMove(ctx, variant, variant.pendingMove);
				const changed = await this.touchProduct(id);
				await this.cleanCache();
				await this.announce(ctx, "product.updated", { productId: id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/products/${id}`;
				// Read after the change: the answer shows the new variant.
				return this.productDetail(changed ?? product);
			},
		},

		// Stock is not editable here: it changes only through adjust, with an audit row.
		updateVariant: {
			rest: "PATCH /products/:id/variants/:variantId",
			openapi: { response: "Product" },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				variantId: "string",
				name: { type: "string", trim: true, min: 1, max: 200, optional: true, ...oneLineRule },
				price: { ...centsRule, optional: true, nullable: true },
				options: { ...optionsRule, optional: true },
			},
			async handler(ctx: Ctx<{ id: string; variantId: string; name?: string; price?: number | null; options?: Record<string, string> }>) {
				const { id, variantId, ...changes } = ctx.params;
				const set = { ...changes, updatedAt: new Date() };
				// A name the shop derived from the options (none was given) follows them; one the admin gave stays.
				const current = changes.options && changes.name === undefined ? await this.db.variants.findOne({ id: variantId, productId: id }) : null;
				const derived = current && hasDerivedName(current) ? current.name : null;
				const write = async () =>
					(derived !== null && (await this.db.variants.updateOne({ id: variantId, productId: id, name: derived }, { $set: { ...set, name: variantDisplayName(changes.options) } }))) ||
					this.db.variants.updateOne({ id: variantId, productId: id }, { $set: set });
				const variant = changes.price !== undefined ? await this.changingFromPrice(id, write) : await write();
				if (!variant) throw new NotFoundError("Variant");
				const changed = await this.touchProduct(id);
				await this.cleanCache();
				await this.announce(ctx, "product.updated", { productId: id });
				return this.productDetail(changed ?? (await this.db.products.findById(id))!);
			},
		},

		// ---------- for other services ----------
		getVariants: {
			visibility: "public",
			params: { $$strict: "remove", ids: idList },
			async handler(ctx: Ctx<{ ids: string[] }>) {
				const variants = await this.db.variants.find({ id: { $in: ctx.params.ids } });
				const products = new Map((await this.db.products.find({ id: { $in: [...new Set(variants.map((v) => v.productId))] } })).map((p) => [p.id, p]));
				return variants.filter((v) => products.has(v.productId)).map((v) => toVariantInfo(v, products.get(v.productId)!));
			},
		},

		getMany: {
			visibility: "public",
			cache: { keys: ["ids"] },
			params: { $$strict: "remove", ids: idList },
			async handler(ctx: Ctx<{ ids: string[] }>) {
				return (await this.db.products.find({ id: { $in: ctx.params.ids } })).map(toProductRef);
			},
		},

		/** The product of an id or a slug (a current or former one, any case), as getMany shows it; 404 when none. */
		getRef: {
			visibility: "public",
			cache: { keys: ["idOrSlug"] },
			params: { $$strict: "remove", idOrSlug: { type: "string", min: 1, max: 200 } },
			async handler(ctx: Ctx<{ idOrSlug: string }>) {
				const product = await this.findProduct(ctx.params.idOrSlug);
				if (!product) throw new NotFoundError("Product");
				return toProductRef(product);
			},
		},

		listForIndex: {
			visibility: "public",
			params: {
				$$strict: "remove",
				page: pageParams.page,
				pageSize: { ...pageParams.pageSize, max: 1000 },
				// Extension: re-index just these products (after product.updated); archived ones are left out.
				ids: { ...idList, optional: true },
				// Paging by key for a full scan: the rows whose id sorts after this one (`page` is then no offset).
				// With offsets, a product archived between two reads moves the next one onto a page already read.
				afterId: { type: "string", min: 1, max: 200, optional: true },
			},
			async handler(ctx: Ctx<{ page?: number; pageSize?: number; ids?: string[]; afterId?: string }>) {
				const { ids, afterId } = ctx.params;
				const size = Math.min(ctx.params.pageSize ?? 100, 1000);
				const page = ctx.params.page ?? 1;
				const query: Record<string, unknown> = { isActive: true, ...(ids ? { id: { $in: ids } } : {}) };
				// `total` stays the whole selection, so it reads the same on every page of a scan.
				const pageQuery = afterId ? { ...query, id: { ...(ids ? { $in: ids } : {}), $gt: afterId } } : query;
				const [products, total, categories] = await Promise.all([
					this.db.products.find(pageQuery, { sort: { id: 1 }, offset: afterId ? 0 : (page - 1) * size, limit: size }),
					this.db.products.count(query),
					this.loadCategories(),
				]);
				const variants = await this.db.variants.find({ productId: { $in: products.map((p) => p.id) } });
				const byCategory = new Map(categories.map((c) => [c.id, c]));
				const byProduct = new Map<string, typeof variants>(products.map((p) => [p.id, []]));
				for (const v of variants) byProduct.get(v.productId)?.push(v);
				const rows = products.map((p) => toIndexDocument(p, byProduct.get(p.id) ?? [], byCategory));
				return toPage(rows, total, page, size);
			},
		},

		// ---------- inventory ----------
		checkStock: {
			visibility: "public",
			params: { $$strict: "remove", items: { type: "array", items: stockLine, min: 1, max: 500 } },
			async handler(ctx: Ctx<{ items: StockLine[] }>) {
				const variants = await this.db.variants.find({ id: { $in: ctx.params.items.map((i) => i.variantId) } });
				const active = new Set((await this.db.products.find({ id: { $in: variants.map((v) => v.productId) }, isActive: true }, { fields: ["id"] })).map((p) => p.id));
				const stock = new Map(variants.filter((v) => active.has(v.productId)).map((v) => [v.id, v.stock]));
				return checkLines(ctx.params.items, (id) => stock.get(id));
			},
		},

		reserve: {
			visibility: "public",
			params: { $$strict: "remove", orderId: { type: "string", min: 1 }, items: { type: "array", items: stockLine, min: 1, max: 500 } },
			async handler(ctx: Ctx<{ orderId: string; items: StockLine[] }>) {
				return this.reserveStock(ctx, ctx.params.orderId, ctx.params.items);
			},
		},

		release: {
			visibility: "public",
			params: { $$strict: "remove", orderId: { type: "string", min: 1 }, reason: { type: "string", max: 200, optional: true } },
			async handler(ctx: Ctx<{ orderId: string; reason?: string }>) {
				return this.releaseStock(ctx, ctx.params.orderId, ctx.params.reason ?? "");
			},
		},

		commit: {
			visibility: "public",
			params: { $$strict: "remove", orderId: { type: "string", min: 1 } },
			async handler(ctx: Ctx<{ orderId: string }>) {
				return this.commitStock(ctx.params.orderId);
			},
		},

		adjust: {
			rest: "POST /inventory/:variantId/adjust",
			openapi: { response: "InventoryAdjustment", responses: { 409: "Stock would go below zero" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				variantId: "string",
				delta: { type: "number", integer: true, min: -1_000_000, max: 1_000_000, notEqual: 0 },
				reason: { type: "string", trim: true, min: 1, max: 200 },
				type: { type: "enum", values: ["adjustment", "purchase"], optional: true },
			},
			async handler(ctx: Ctx<{ variantId: string; delta: number; reason: string; type?: "adjustment" | "purchase" }>) {
				const { variantId, delta, reason } = ctx.params;
				// The trail says what happened: goods received add stock, a count or a loss is an adjustment.
				if (ctx.params.type === "purchase" && delta < 0) throw invalidField("delta", "A purchase adds stock: delta must be above 0 (record a loss as an adjustment)", "numberMin");
				const variant = await this.moveStock(ctx, variantId, delta, ctx.params.type ?? "adjustment", reason, { userId: ctx.meta.user?.id });
				if (variant) return { variantId, productId: variant.productId, sku: variant.sku, stock: variant.stock, delta };
				const current = await this.db.variants.findById(variantId);
				if (!current) throw new NotFoundError("Variant");
				// Never below zero: a negative adjustment larger than the stock is refused whole.
				throw new InsufficientStockError({ variantId, requested: -delta, available: current.stock });
			},
		},

		inventoryHistory: {
			rest: "GET /inventory/:variantId/history",
			openapi: { response: { list: "InventoryTransaction" } },
			roles: ["admin"],
			params: { $$strict: "remove", variantId: "string", ...pageParams },
			async handler(ctx: Ctx<{ variantId: string; page?: number; pageSize?: number }>) {
				const { variantId } = ctx.params;
				if (!(await this.db.variants.findById(variantId))) throw new NotFoundError("Variant");
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const [rows, total] = await this.db.inventory_transactions.findWithCount({ variantId }, { sort: { createdAt: -1, id: 1 }, offset: w.offset, limit: w.limit });
				// `key` makes a movement written twice (a retry, a recovery) count once: the store's business.
				return toPage(rows.map(({ key: _key, ...row }) => row), total, w.page, w.pageSize);
			},
		},
	},


	methods: {
		/**
		 * A product's rating from `review.moderated`, live or caught up from the reviews outbox. Only a
		 * newer version replaces the stored one, so a replay or a late older event changes nothing. A
		 * malformed event is logged and passed over (throwing would hold the outbox there for ever).
		 */
		async storeRating(_event: string, payload: unknown, ctx: Context | null) {
			const update = productRatingUpdate(payload);
			if (!update) {
				this.logger.warn("Ignored a review.moderated event without a valid product rating:", payload);
				return;
			}
			const newer = update.version === null ? {} : absentOr("ratingVersion", { $lt: update.version });
			const updated = await this.db.products.updateOne({ id: update.productId, ...newer }, { $set: { rating: update.rating, ...(update.version === null ? {} : { ratingVersion: update.version }) } });
			if (!updated) return;
			await this.cleanCache();
			await this.announce(ctx, "product.updated", { productId: update.productId });
		},

		/** A created product whole at last: on sale and announced. Null when it was finished already. */
		async finishCreation(ctx: Context | null, productId: string) {
			const created = await this.db.products.updateOne({ id: productId, creating: { $exists: true } }, { $set: { isActive: true }, $unset: { creating: true } });
			if (!created) return null;
			await this.cleanCache();
			await this.announce(ctx, "product.created", { productId });
			return created;
		},

		/**
		 * Products whose creation a crash interrupted (older than the sweep's stale limit): one with every
		 * variant it was created with stored is finished (their opening stock's audit rows were written by
		 * the sweep of parked moves just before); one without is undone, as the failed request would have,
		 * so the admin's retry can take its slug and SKUs. Its SKUs are checked, not a count: a variant
		 * that came some other way must not stand in for a missing one, nor make a whole product look broken.
		 */
		async finishInterruptedCreations(staleAfterMs?: number) {
			const stale = staleAfterMs ?? this.settings.reservationSweep?.staleAfterMs ?? 2 * 60_000;
			const stuck = (await this.db.products.find({ "creating.since": { $lte: Date.now() - stale } }, { limit: 100 })) as Array<Row<Product> & { creating: Creating }>;
			let finished = 0;
			let undone = 0;
			for (const product of stuck) {
				const variants = (await this.db.variants.find({ productId: product.id })) as Array<Row<Variant> & { pendingMove?: ParkedMove }>;
				if (variants.some((v) => v.pendingMove)) continue;
				const stored = new Set(variants.map((v) => v.sku));
				const { skus, variants: count } = product.creating;
				const whole = skus ? skus.every((sku) => stored.has(sku)) : variants.length >= count;
				if (whole) {
					if (await this.finishCreation(null, product.id)) finished++;
				} else {
					await this.db.variants.removeMany({ productId: product.id });
					await this.db.products.removeOne({ id: product.id, creating: { $exists: true } });
					undone++;
				}
				this.logger.warn(`Product ${product.slug} was left half-created by a crash: ${whole ? "finished" : "undone"}.`);
			}
			return { finished, undone };
		},

		/** Plain broker events carry an eventId too, so consumers can deduplicate. */
		async announce(ctx: Context | null, event: string, payload: Record<string, unknown>) {
			const full = { ...payload, eventId: crypto.randomUUID() };
			if (ctx) await ctx.emit(event, full);
			else await this.broker.emit(event, full);
		},

		loadCategories() {
			return this.db.categories.find({});
		},

		async assertCategory(categoryId: string | null | undefined) {
			if (categoryId && !(await this.db.categories.findById(categoryId))) throw invalidField("categoryId", "The category does not exist.");
		},

		/** A slug made from the name, numbered when taken ("tote-bag-2"). */
		async freeSlug(collection: Collection, name: string) {
			const base = slugify(name);
			if (!base) throw invalidField("name", "The name needs letters or digits to make a slug; give a slug.");
			const taken = await collection.find({ slug: { $regex: slugFamilyPattern(base) } }, { fields: ["slug"] });
			return uniqueSlug(base, taken.map((t) => t.slug));
		},

		async assertSlugFree(collection: Collection, slug: string, exceptId?: string) {
			const other = await collection.findOne({ slug });
			if (other && other.id !== exceptId) throw new ConflictError("Slug already in use", "DUPLICATE", { field: "slug", slug });
		},

		/** A change to one of its variants is a change to the product: its `updatedAt` moves (one update, no read first). */
		async touchProduct(productId: string) {
			return this.db.products.updateOne({ id: productId }, { $set: { updatedAt: new Date() } });
		},

		async findProduct(idOrSlug: string) {
			// Slugs are lower case: a link typed or shared in other case finds the product, as category slugs do.
			const slug = idOrSlug.toLowerCase();
			return (await this.db.products.findById(idOrSlug)) ?? (await this.db.products.findOne({ slug })) ?? this.db.products.findOne({ formerSlugs: slug }, { sort: { updatedAt: -1 } });
		},

		/**
		 * Stores the product's "from" price after its price or a variant's changed. A compare-and-set on
		 * `fromPriceVersion`: a recompute that read the variants before another change landed loses to
		 * that change's own recompute and reads again, so the price stored last saw every change.
		 */
		async refreshFromPrice(productId: string) {
			for (let attempt = 1; attempt <= 10; attempt++) {
				const product = await this.db.products.findOne({ id: productId }, { fields: ["price", "fromPriceVersion"] });
				if (!product) return;
				const variants = await this.db.variants.find({ productId }, { fields: ["price"] });
				const seen = product.fromPriceVersion ?? { $exists: false };
				const stored = await this.db.products.updateOne({ id: productId, fromPriceVersion: seen }, { $set: { fromPrice: fromPriceOf(product, variants) }, $inc: { fromPriceVersion: 1 } });
				if (stored) return;
			}
			// Only under a storm of edits to one product; the admin's retry recomputes it.
			throw new ServiceUnavailableError("The product's listed price could not be updated; try again", { productId });
		},

		/**
		 * Runs a change that may move the product's "from" price. The price is dropped first, so a crash
		 * before it is worked out again leaves it missing, which the start-up pass fills, rather than
		 * wrong for good; it is worked out again after the change, whatever its outcome. While missing,
		 * the list shows the product's own price and its price filters pass the product by.
		 */
		async changingFromPrice<T>(productId: string, change: () => Promise<T>): Promise<T> {
			await this.db.products.updateOne({ id: productId }, { $unset: { fromPrice: true } });
			try {
				return await change();
			} finally {
				await this.refreshFromPrice(productId);
			}
		},

		/**
		 * Gives a "from" price to products stored before the listing kept one, and to those a change cut
		 * short left without one (see changingFromPrice): a page at a time by id, and
		 * only where it is still missing (after the first start, the scan finds none).
		 */
		async fillMissingFromPrices() {
			const missing = { fromPrice: { $exists: false } };
			let filled = 0;
			let after = "";
			for (;;) {
				const products = await this.db.products.find({ ...missing, ...(after ? { id: { $gt: after } } : {}) }, { fields: ["id", "price"], sort: { id: 1 }, limit: 1000 });
				if (!products.length) break;
				after = products[products.length - 1].id;
				const variants = await this.db.variants.find({ productId: { $in: products.map((p) => p.id) } }, { fields: ["productId", "price"] });
				// One write per distinct price: shop prices repeat (24.99), so far fewer writes than products.
				const byPrice = new Map<number, string[]>();
				for (const [id, price] of fromPricesOf(products, variants)) (byPrice.get(price) ?? byPrice.set(price, []).get(price)!).push(id);
				// Still missing: a recompute that ran meanwhile knows better.
				for (const [fromPrice, ids] of byPrice) filled += await this.db.products.updateMany({ id: { $in: ids }, ...missing }, { $set: { fromPrice } });
			}
			return filled;
		},

		async productDetail(product: Row<Product>) {
			const [variants, categories] = await Promise.all([this.db.variants.find({ productId: product.id }, { sort: { createdAt: 1, sku: 1 } }), this.loadCategories()]);
			return toProductDetail(product, variants, categories);
		},

		/** The name order's key of products stored before it was kept, a page at a time; returns how many. */
		async fillMissingSortNames() {
			let filled = 0;
			for (;;) {
				const products = await this.db.products.find({ sortName: { $exists: false } }, { fields: ["id", "name"], sort: { id: 1 }, limit: 1000 });
				if (!products.length) return filled;
				// A rename meanwhile set it already.
				for (const p of products) filled += (await this.db.products.updateOne({ id: p.id, sortName: { $exists: false } }, { $set: { sortName: nameSortKey(p.name) } })) ? 1 : 0;
			}
		},

		/** Fills what older rows lack; then the demo catalog on the first start of the embedded default (never under tests). */
		async seedDB() {
			const filled = await this.fillMissingFromPrices();
			const named = await this.fillMissingSortNames();
			if (named) this.logger.info(`Stored the name order of ${named} products.`);
			if (filled || named) {
				if (filled) this.logger.info(`Stored the listed "from" price of ${filled} products.`);
				// A shared cacher may still hold listings from before.
				await this.cleanCache();
			}
			const cfg = readConfig();
			// SEED_DEMO=false starts with an empty shop.
			if (cfg.isTest || !cfg.seedDemo) return;
			if ((await this.db.products.count({})) > 0) return;
			try {
				const written = await writeCatalog(this.db, generateCatalog());
				this.logger.info(`Seeded the demo catalog: ${written.products} products, ${written.variants} variants.`);
			} catch (err) {
				// Another node seeding at the same moment wins the unique indexes; its catalog is the same.
				if (!isDuplicate(err)) throw err;
			}
		},
	},
};

export default ProductsService;
