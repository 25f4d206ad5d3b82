/**
 * Catalog and inventory: categories, products, variants, and stock that never oversells.
 * Stock moves only through one atomic conditional update per variant (`stock >= qty`, then
 * decrement), and every move writes an audit row and emits `inventory.changed`. A reservation's
 * moves also record a hold on the variant in that same update, so a sweeper can finish or roll
 * back what a crash left half done (the invariant is in lib/inventory-rules.ts).
 */
import crypto from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin } from "../mixins/db.mixin";
import { newId, type Collection, type CollectionSpec, type Entity } from "../mixins/collection";
import { HealthMixin } from "../mixins/health.mixin";
import type { ShopMeta } from "../mixins/types";
import { readConfig } from "../lib/config";
import { ConflictError, InsufficientStockError, NotFoundError, invalidField } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { slugify, slugFamilyPattern, uniqueSlug } from "../lib/slug";
import { buildCategoryTree, descendantIds, wouldCreateCycle, type CategoryNode } from "../lib/category-tree";
import { centsRule, currencyRule, slugRule, optionsRule, imageRule, variantRule, duplicateSkus, newProductDoc, newVariantDoc, toStoredImages, compareAtProblem, type ProductInput, type VariantInput } from "../lib/catalog-rules";
import { toProductDetail, toProductSummary, toVariantInfo, toProductRef, toIndexDocument, type Product, type Variant } from "../lib/catalog-views";
import { PRODUCT_SORTS, productListQuery, productListSort, type ProductSort } from "../lib/catalog-query";
import { mergeLines, sameLines, checkLines, holdField, movementKey, rollbackSteps, RELEASE_TRANSITIONS, RELEASED_STATES, SWEEP_TRANSITIONS, SWEPT_STATUSES, type MovementType, type ReservationStatus, type StockLine } from "../lib/inventory-rules";
import { generateCatalog, type DemoCatalog } from "../lib/demo-catalog";

/** The products service's collections; the seed script and tests open the same specs. */
export const productCollections: Record<keyof ProductDb, CollectionSpec> = {
	categories: {
		fields: { name: String, slug: String, parentId: { type: String, default: null }, description: String, position: Number, createdAt: Date, updatedAt: Date },
		indexes: [{ fields: { slug: 1 }, unique: true }, { fields: { parentId: 1 } }],
	},
	products: {
		fields: {
			name: String, slug: String, description: String, categoryId: { type: String, default: null },
			price: Number, compareAtPrice: { type: Number, default: null }, currency: String,
			images: [{ _id: false, url: String, alt: String, position: Number }],
			isActive: Boolean, rating: { average: Number, count: Number }, createdAt: Date, updatedAt: Date, archivedAt: Date,
		},
		indexes: [{ fields: { slug: 1 }, unique: true }, { fields: { categoryId: 1 } }, { fields: { price: 1 } }, { fields: { createdAt: 1 } }],
	},
	variants: {
		// `holds`: {reservationId: quantity} of the reservations whose stock is out (see lib/inventory-rules.ts).
		// `pendingMove`: a stock change outside reservations whose audit row is being written (see moveStock);
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
		fields: { orderId: String, status: String, items: { type: Array, default: [] }, holdsOpen: Boolean, reason: String, createdAt: Date, updatedAt: Date },
		indexes: [{ fields: { orderId: 1 }, unique: true }, { fields: { holdsOpen: 1, updatedAt: 1 } }],
	},
};

type Row<T> = T & Entity;
interface Category extends CategoryNode { createdAt: Date; updatedAt?: Date }
interface Reservation { orderId: string; status: ReservationStatus; items: Array<StockLine & { productId: string }>; holdsOpen?: boolean; reason?: string; createdAt: Date; updatedAt: Date }
/** A stock movement between its stock update and its audit row. */
interface ParkedMove { key: string; delta: number; type: MovementType; reference: string; userId?: string; since: number }
type HeldVariant = Variant & { holds?: Record<string, number>; pendingMove?: ParkedMove };
/** What the stock work of a reservation needs to know of it. */
type ReservationRef = Pick<Row<Reservation>, "id" | "orderId">;
interface ProductDb {
	categories: Collection<Row<Category>>;
	products: Collection<Row<Product>>;
	variants: Collection<Row<HeldVariant>>;
	inventory_transactions: Collection;
	reservations: Collection<Row<Reservation>>;
}

/** How long a duplicate reserve waits for the first call of the same order to finish. */
const RESERVE_WAIT_MS = 3000;
const RESERVE_POLL_MS = 20;
/** How long a stock change waits for the variant's parked movement to be recorded. */
const MOVE_WAIT_MS = 3000;
const MOVE_POLL_MS = 5;
/** Stale reservations finished per sweep; the next sweep takes the rest. */
const SWEEP_BATCH = 100;

interface ProductSettings extends ServiceSettingSchema {
	rest: string;
	reservationSweep: {
		/** A reservation whose stock work has not finished this long after its last change is taken as crashed. Keep it well above the request timeout. */
		staleAfterMs: number;
		/** How often each node sweeps (also once at start); 0 turns the sweeper off. */
		intervalMs: number;
	};
}

/** Writes a generated catalog, skipping slugs and SKUs already stored (re-runs add only what is new). */
export async function writeCatalog(db: ProductDb, catalog: DemoCatalog, reference = "seed"): Promise<{ products: number; variants: number }> {
	const existingCats = await db.categories.find({ slug: { $in: catalog.categories.map((c) => c.slug) } }, { fields: ["slug"] });
	const catIds = new Map(existingCats.map((c) => [c.slug, c.id]));
	const newCats = catalog.categories.filter((c) => !catIds.has(c.slug));
	const remapCat = new Map(catalog.categories.map((c) => [c.id, catIds.get(c.slug) ?? c.id]));
	if (newCats.length) await db.categories.insertMany(newCats.map((c) => ({ ...c, parentId: c.parentId && remapCat.get(c.parentId) })));

	const takenSlugs = new Set((await db.products.find({ slug: { $in: catalog.products.map((p) => p.slug) } }, { fields: ["slug"] })).map((p) => p.slug));
	const products = catalog.products.filter((p) => !takenSlugs.has(p.slug));
	const productIds = new Set(products.map((p) => p.id));
	const takenSkus = new Set((await db.variants.find({ sku: { $in: catalog.variants.map((v) => v.sku) } }, { fields: ["sku"] })).map((v) => v.sku));
	const variants = catalog.variants.filter((v) => productIds.has(v.productId) && !takenSkus.has(v.sku));
	if (products.length) await db.products.insertMany(products.map((p) => ({ ...p, categoryId: p.categoryId && remapCat.get(p.categoryId) })));
	if (variants.length) {
		await db.variants.insertMany(variants);
		// Opening stock is a purchase, so the audit trail of every variant sums to its stock.
		const opening = variants.filter((v) => v.stock > 0);
		if (opening.length) await db.inventory_transactions.insertMany(opening.map((v) => ({ variantId: v.id, productId: v.productId, delta: v.stock, type: "purchase", reference, stockAfter: v.stock, createdAt: v.createdAt })));
	}
	return { products: products.length, variants: variants.length };
}

interface Methods {
	announce(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<void>;
	loadCategories(): Promise<Row<Category>[]>;
	assertCategory(categoryId: string | null | undefined): Promise<void>;
	freeSlug(collection: Collection, name: string): Promise<string>;
	assertSlugFree(collection: Collection, slug: string, exceptId?: string): Promise<void>;
	findProduct(idOrSlug: string): Promise<Row<Product> | null>;
	productDetail(product: Row<Product>): Promise<ReturnType<typeof toProductDetail>>;
	sellableVariants(lines: StockLine[]): Promise<Map<string, Row<Variant>>>;
	moveStock(ctx: Context, variantId: string, delta: number, type: MovementType, reference: string, extra?: MovementExtra): Promise<Row<Variant> | null>;
	finishMove(ctx: Context | null, variant: Row<HeldVariant>, move: ParkedMove, recovered?: boolean): Promise<void>;
	sweepParkedMoves(now?: Date): Promise<{ finished: number }>;
	recordMovement(ctx: Context | null, variant: Row<Variant>, delta: number, type: MovementType, reference: string, extra?: MovementExtra): Promise<void>;
	writeAuditRow(row: Record<string, unknown>): Promise<boolean>;
	claimReservation(id: string, orderId: string, items: Reservation["items"]): Promise<Row<Reservation> | null | "retry">;
	takeLine(ctx: Context, r: ReservationRef, line: StockLine): Promise<boolean>;
	putBackLine(ctx: Context | null, r: ReservationRef, line: StockLine): Promise<boolean>;
	putBackLines(ctx: Context | null, r: ReservationRef, lines: StockLine[]): Promise<void>;
	returnLines(ctx: Context, r: Row<Reservation>): Promise<void>;
	settleSale(r: Row<Reservation>): Promise<void>;
	closeReservation(r: ReservationRef): Promise<void>;
	finishCancelled(r: ReservationRef): Promise<void>;
	rollbackLine(r: Row<Reservation>, line: Reservation["items"][number]): Promise<void>;
	sweepReservations(now?: Date): Promise<{ swept: number }>;
}
interface MovementExtra {
	userId?: string;
	key?: string;
	recovered?: boolean;
}
interface Vars {
	db: ProductDb;
	cleanCache(): Promise<void>;
	sweepTimer?: NodeJS.Timeout;
	sweeping?: Promise<unknown>;
}
type Ctx<P = Record<string, never>> = Context<P, ShopMeta>;

const stockLine = { type: "object", strict: "remove", props: { variantId: "string", quantity: { type: "number", integer: true, min: 1, max: 10_000 } } } as const;
const idList = { type: "array", items: "string", max: 1000 } as const;

const ProductsService: ServiceSchema<ProductSettings, Methods, Vars> = {
	name: "products",
	mixins: [DbMixin("products", productCollections), HealthMixin],
	settings: { rest: "/", reservationSweep: { staleAfterMs: 2 * 60_000, intervalMs: 30_000 } },

	actions: {
		// ---------- categories ----------
		listCategories: {
			rest: "GET /categories",
			cache: true,
			publicCache: true,
			params: { $$strict: "remove" },
			async handler() {
				return buildCategoryTree(await this.loadCategories());
			},
		},

		createCategory: {
			rest: "POST /categories",
			roles: ["admin"],
			params: {
				$$strict: "remove",
				name: { type: "string", trim: true, min: 1, max: 100 },
				slug: { ...slugRule, optional: true },
				parentId: { type: "string", optional: true, nullable: true },
				description: { type: "string", max: 2000, optional: true },
				position: { type: "number", integer: true, optional: true },
			},
			async handler(ctx: Ctx<{ name: string; slug?: string; parentId?: string | null; description?: string; position?: number }>) {
				const { name, parentId, description, position } = ctx.params;
				if (parentId && !(await this.db.categories.findById(parentId))) throw invalidField("parentId", "The parent category does not exist.");
				let slug = ctx.params.slug;
				if (slug) await this.assertSlugFree(this.db.categories, slug);
				else slug = await this.freeSlug(this.db.categories, name);
				const now = new Date();
				const category = await this.db.categories.insert({ name, slug, parentId: parentId ?? null, description: description ?? "", position: position ?? 0, createdAt: now, updatedAt: now });
				await this.cleanCache();
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/categories`;
				return category;
			},
		},

		updateCategory: {
			rest: "PATCH /categories/:id",
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				name: { type: "string", trim: true, min: 1, max: 100, optional: true },
				slug: { ...slugRule, optional: true },
				parentId: { type: "string", optional: true, nullable: true },
				description: { type: "string", max: 2000, optional: true },
				position: { type: "number", integer: true, optional: true },
			},
			async handler(ctx: Ctx<{ id: string; slug?: string; parentId?: string | null } & Record<string, unknown>>) {
				const { id, ...changes } = ctx.params;
				const all = await this.loadCategories();
				if (!all.some((c) => c.id === id)) throw new NotFoundError("Category");
				if (changes.parentId) {
					if (!all.some((c) => c.id === changes.parentId)) throw invalidField("parentId", "The parent category does not exist.");
					if (wouldCreateCycle(all, id, changes.parentId)) throw invalidField("parentId", "A category cannot move below itself.", "cycle");
				}
				if (changes.slug) await this.assertSlugFree(this.db.categories, changes.slug, id);
				const updated = await this.db.categories.updateById(id, { $set: { ...changes, updatedAt: new Date() } });
				await this.cleanCache();
				return updated;
			},
		},

		// ---------- products ----------
		list: {
			rest: "GET /products",
			// Listing rows carry no stock, so only catalog writes (which clean the cache) change them.
			cache: { keys: ["category", "minPrice", "maxPrice", "sort", "page", "pageSize"] },
			publicCache: true,
			params: {
				$$strict: "remove",
				category: { type: "string", optional: true },
				minPrice: { ...centsRule, optional: true, convert: true },
				maxPrice: { ...centsRule, optional: true, convert: true },
				sort: { type: "enum", values: Object.keys(PRODUCT_SORTS), optional: true },
				...pageParams,
			},
			async handler(ctx: Ctx<{ category?: string; minPrice?: number; maxPrice?: number; sort?: ProductSort; page?: number; pageSize?: number }>) {
				const { category, minPrice, maxPrice, sort } = ctx.params;
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				let categoryIds: string[] | undefined;
				if (category) {
					const all = await this.loadCategories();
					const root = all.find((c) => c.slug === category || c.id === category);
					categoryIds = root ? descendantIds(all, root.id) : [];
				}
				const query = productListQuery({ categoryIds, minPrice, maxPrice });
				const [rows, total] = await this.db.products.findWithCount(query, { sort: productListSort(sort), offset: w.offset, limit: w.limit });
				return toPage(rows.map(toProductSummary), total, w.page, w.pageSize);
			},
		},

		// Not cached: it shows live stock.
		get: {
			rest: "GET /products/:idOrSlug",
			auth: "optional",
			params: { $$strict: "remove", idOrSlug: { type: "string", min: 1 } },
			async handler(ctx: Ctx<{ idOrSlug: string }>) {
				const product = await this.findProduct(ctx.params.idOrSlug);
				// Archived products stay readable for admins (past orders link to them), not for shoppers.
				if (!product || (!product.isActive && ctx.meta.user?.role !== "admin")) throw new NotFoundError("Product");
				await this.announce(ctx, "product.viewed", { productId: product.id, ...(ctx.meta.user ? { userId: ctx.meta.user.id } : {}) });
				return this.productDetail(product);
			},
		},

		create: {
			rest: "POST /products",
			roles: ["admin"],
			params: {
				$$strict: "remove",
				name: { type: "string", trim: true, min: 1, max: 200 },
				slug: { ...slugRule, optional: true },
				description: { type: "string", max: 10_000, optional: true },
				categoryId: { type: "string", optional: true, nullable: true },
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
				const product = await this.db.products.insert(newProductDoc(input, slug, now));
				let variants: Row<Variant>[];
				try {
					variants = await this.db.variants.insertMany(input.variants.map((v) => newVariantDoc(v, product.id, now)));
				} catch (err) {
					// All or nothing: a product never stays behind without its variants (e.g. a SKU taken meanwhile).
					await this.db.variants.removeMany({ productId: product.id });
					await this.db.products.removeOne({ id: product.id });
					throw err;
				}
				// Opening stock is a purchase, so the audit trail of every variant sums to its stock.
				for (const v of variants) if (v.stock > 0) await this.recordMovement(ctx, v, v.stock, "purchase", "initial stock");
				await this.cleanCache();
				await this.announce(ctx, "product.created", { productId: product.id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/products/${product.id}`;
				return this.productDetail(product);
			},
		},

		update: {
			rest: "PATCH /products/:id",
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				name: { type: "string", trim: true, min: 1, max: 200, optional: true },
				slug: { ...slugRule, optional: true },
				description: { type: "string", max: 10_000, optional: true },
				categoryId: { type: "string", optional: true, nullable: true },
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
				const problem = compareAtProblem(changes.price ?? current.price, changes.compareAtPrice === undefined ? current.compareAtPrice : changes.compareAtPrice);
				if (problem) throw invalidField("compareAtPrice", problem);
				if (changes.categoryId !== undefined) await this.assertCategory(changes.categoryId);
				if (changes.slug && changes.slug !== current.slug) await this.assertSlugFree(this.db.products, changes.slug, id);
				const set: Record<string, unknown> = { ...changes, updatedAt: new Date() };
				if (images) set.images = toStoredImages(images, changes.name ?? current.name);
				if (changes.isActive === false && current.isActive) set.archivedAt = new Date();
				const updated = (await this.db.products.updateById(id, { $set: set }))!;
				await this.cleanCache();
				await this.announce(ctx, current.isActive && !updated.isActive ? "product.archived" : "product.updated", { productId: id });
				return this.productDetail(updated);
			},
		},

		// Archive, never delete: past orders keep pointing at the product.
		archive: {
			rest: "DELETE /products/:id",
			roles: ["admin"],
			params: { $$strict: "remove", id: "string" },
			async handler(ctx: Ctx<{ id: string }>) {
				const now = new Date();
				const archived = await this.db.products.updateOne({ id: ctx.params.id, isActive: true }, { $set: { isActive: false, archivedAt: now, updatedAt: now } });
				if (archived) {
					await this.cleanCache();
					await this.announce(ctx, "product.archived", { productId: archived.id });
					return toProductSummary(archived);
				}
				const product = await this.db.products.findById(ctx.params.id);
				if (!product) throw new NotFoundError("Product");
				return toProductSummary(product);
			},
		},

		addVariant: {
			rest: "POST /products/:id/variants",
			roles: ["admin"],
			params: { $$strict: "remove", id: "string", ...variantRule.props },
			async handler(ctx: Ctx<VariantInput & { id: string }>) {
				const { id, ...input } = ctx.params;
				const product = await this.db.products.findById(id);
				if (!product) throw new NotFoundError("Product");
				if (await this.db.variants.findOne({ sku: input.sku })) throw new ConflictError("SKU already in use", "DUPLICATE", { field: "sku", skus: [input.sku] });
				const variant = await this.db.variants.insert(newVariantDoc(input, id, new Date()));
				if (variant.stock > 0) await this.recordMovement(ctx, variant, variant.stock, "purchase", "initial stock");
				await this.cleanCache();
				await this.announce(ctx, "product.updated", { productId: id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/products/${id}`;
				return this.productDetail(product);
			},
		},

		// Stock is not editable here: it changes only through adjust, with an audit row.
		updateVariant: {
			rest: "PATCH /products/:id/variants/:variantId",
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				variantId: "string",
				name: { type: "string", trim: true, min: 1, max: 200, optional: true },
				price: { ...centsRule, optional: true, nullable: true },
				options: { ...optionsRule, optional: true },
			},
			async handler(ctx: Ctx<{ id: string; variantId: string; name?: string; price?: number | null; options?: Record<string, string> }>) {
				const { id, variantId, ...changes } = ctx.params;
				const variant = await this.db.variants.updateOne({ id: variantId, productId: id }, { $set: { ...changes, updatedAt: new Date() } });
				if (!variant) throw new NotFoundError("Variant");
				await this.cleanCache();
				await this.announce(ctx, "product.updated", { productId: id });
				return this.productDetail((await this.db.products.findById(id))!);
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

		listForIndex: {
			visibility: "public",
			params: {
				$$strict: "remove",
				page: pageParams.page,
				pageSize: { ...pageParams.pageSize, max: 1000 },
				// Extension: re-index just these products (after product.updated); archived ones are left out.
				ids: { ...idList, optional: true },
			},
			async handler(ctx: Ctx<{ page?: number; pageSize?: number; ids?: string[] }>) {
				const size = Math.min(ctx.params.pageSize ?? 100, 1000);
				const page = ctx.params.page ?? 1;
				const query: Record<string, unknown> = { isActive: true, ...(ctx.params.ids ? { id: { $in: ctx.params.ids } } : {}) };
				const [products, total, categories] = await Promise.all([
					this.db.products.find(query, { sort: { id: 1 }, offset: (page - 1) * size, limit: size }),
					this.db.products.count(query),
					this.loadCategories(),
				]);
				const variants = await this.db.variants.find({ productId: { $in: products.map((p) => p.id) } });
				const byCategory = new Map(categories.map((c) => [c.id, c]));
				const byProduct = new Map<string, typeof variants>();
				for (const v of variants) {
					const list = byProduct.get(v.productId);
					if (list) list.push(v);
					else byProduct.set(v.productId, [v]);
				}
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
				const { orderId } = ctx.params;
				const lines = mergeLines(ctx.params.items);
				const variants = await this.sellableVariants(lines);
				const items = lines.map((l) => ({ ...l, productId: variants.get(l.variantId)!.productId }));

				// Claim the order's reservation first: a duplicate call finds it and reserves nothing more.
				const r = { id: newId(), orderId };
				for (let waited = 0; ; waited += RESERVE_POLL_MS) {
					const existing = await this.claimReservation(r.id, orderId, items);
					if (existing === null) break;
					if (existing !== "retry") {
						if (RELEASED_STATES.has(existing.status)) throw new ConflictError("This order's reservation was released", "RESERVATION_RELEASED", { orderId });
						if (!sameLines(existing.items, lines)) throw new ConflictError("This order already reserved other items", "RESERVATION_MISMATCH", { orderId });
						if (existing.status === "reserved" || existing.status === "committed") return { orderId, items: existing.items };
						if (waited >= RESERVE_WAIT_MS) throw new ConflictError("A reservation for this order is in progress", "RESERVATION_IN_PROGRESS", { orderId });
					}
					await sleep(RESERVE_POLL_MS);
				}

				const taken: StockLine[] = [];
				for (const line of lines) {
					if (!(await this.takeLine(ctx, r, line))) {
						// All or nothing: what the earlier lines took goes back before we answer.
						await this.putBackLines(ctx, r, taken);
						// Nothing is held any more, so the record goes and the order may try again later.
						const removed = await this.db.reservations.removeOne({ id: r.id, status: "pending" });
						if (!removed) await this.finishCancelled(r);
						const variant = await this.db.variants.findById(line.variantId);
						// The sweeper fenced this line: it took us for crashed and rolled the reservation back.
						if (variant?.holds?.[r.id] === 0) throw new ConflictError("The reservation expired while it was being made", "RESERVATION_RELEASED", { orderId });
						throw new InsufficientStockError({ variantId: line.variantId, requested: line.quantity, available: variant?.stock ?? 0 });
					}
					taken.push(line);
				}
				const done = await this.db.reservations.updateOne({ id: r.id, status: "pending" }, { $set: { status: "reserved", updatedAt: new Date() } });
				if (!done) {
					// A release (or the sweeper) came while we were reserving: what we took goes back.
					await this.putBackLines(ctx, r, taken);
					await this.finishCancelled(r);
					throw new ConflictError("The reservation was released while it was being made", "RESERVATION_RELEASED", { orderId });
				}
				return { orderId, items };
			},
		},

		release: {
			visibility: "public",
			params: { $$strict: "remove", orderId: { type: "string", min: 1 }, reason: { type: "string", max: 200, optional: true } },
			async handler(ctx: Ctx<{ orderId: string; reason?: string }>) {
				const { orderId } = ctx.params;
				const reason = ctx.params.reason ?? "";
				for (;;) {
					for (const t of RELEASE_TRANSITIONS) {
						const released = await this.db.reservations.updateOne({ orderId, status: t.from }, { $set: { status: t.to, reason, updatedAt: new Date() } });
						if (released) {
							if (t.movement === "return") await this.returnLines(ctx, released);
							else if (released.holdsOpen !== undefined) await this.putBackLines(ctx, released, released.items);
							// Reserved before holds existed (no holdsOpen): its stock goes back unguarded, as it was taken.
							else for (const line of released.items) await this.moveStock(ctx, line.variantId, line.quantity, "release", orderId);
							await this.closeReservation(released);
							return { released: true };
						}
					}
					// A reserve still applying its lines sees "cancelling" at its end and puts everything back.
					if (await this.db.reservations.updateOne({ orderId, status: "pending" }, { $set: { status: "cancelling", reason, updatedAt: new Date() } })) return { released: true };
					const current = await this.db.reservations.findOne({ orderId });
					// `released` tells whether this call put stock back, so a caller records the release once.
					if (current && (RELEASED_STATES.has(current.status) || current.status === "cancelling")) return { released: false, alreadyReleased: current.items.length > 0 };
					if (current) continue; // it moved on between our updates: try the transitions again
					try {
						// Nothing reserved: a marker keeps a late-arriving reserve of this order from taking stock.
						await this.db.reservations.insert({ orderId, status: "released", items: [], reason, createdAt: new Date(), updatedAt: new Date() });
						return { released: false };
					} catch (err) {
						if ((err as ConflictError).type !== "DUPLICATE") throw err;
					}
				}
			},
		},

		commit: {
			visibility: "public",
			params: { $$strict: "remove", orderId: { type: "string", min: 1 } },
			async handler(ctx: Ctx<{ orderId: string }>) {
				const { orderId } = ctx.params;
				const committed = await this.db.reservations.updateOne({ orderId, status: "reserved" }, { $set: { status: "committed", updatedAt: new Date() } });
				if (committed) {
					await this.settleSale(committed);
					await this.closeReservation(committed);
					return { committed: true };
				}
				const current = await this.db.reservations.findOne({ orderId });
				return current?.status === "committed" ? { committed: true, alreadyCommitted: true } : { committed: false };
			},
		},

		adjust: {
			rest: "POST /inventory/:variantId/adjust",
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
			roles: ["admin"],
			params: { $$strict: "remove", variantId: "string", ...pageParams },
			async handler(ctx: Ctx<{ variantId: string; page?: number; pageSize?: number }>) {
				const { variantId } = ctx.params;
				if (!(await this.db.variants.findById(variantId))) throw new NotFoundError("Variant");
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const [rows, total] = await this.db.inventory_transactions.findWithCount({ variantId }, { sort: { createdAt: -1, id: 1 }, offset: w.offset, limit: w.limit });
				return toPage(rows, total, w.page, w.pageSize);
			},
		},
	},

	events: {
		"review.moderated": {
			params: { productId: "string", rating: { type: "object", props: { average: { type: "number", nullable: true }, count: { type: "number", integer: true, min: 0 } } } },
			async handler(ctx: Context<{ productId: string; rating: { average: number | null; count: number } }>) {
				const { productId, rating } = ctx.params;
				const updated = await this.db.products.updateById(productId, { $set: { rating: { average: rating.average ?? 0, count: rating.count } } });
				if (!updated) return;
				await this.cleanCache();
				await this.announce(ctx, "product.updated", { productId });
			},
		},
	},

	methods: {
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

		async findProduct(idOrSlug: string) {
			return (await this.db.products.findById(idOrSlug)) ?? this.db.products.findOne({ slug: idOrSlug });
		},

		async productDetail(product: Row<Product>) {
			const [variants, categories] = await Promise.all([this.db.variants.find({ productId: product.id }, { sort: { createdAt: 1, sku: 1 } }), this.loadCategories()]);
			return toProductDetail(product, variants, categories);
		},

		/** The variants of the lines, all known (404) and of products still on sale (409). */
		async sellableVariants(lines: StockLine[]) {
			const variants = new Map((await this.db.variants.find({ id: { $in: lines.map((l) => l.variantId) } })).map((v) => [v.id, v]));
			const missing = lines.find((l) => !variants.has(l.variantId));
			if (missing) throw new NotFoundError("Variant", { variantId: missing.variantId });
			const active = new Set((await this.db.products.find({ id: { $in: [...new Set([...variants.values()].map((v) => v.productId))] }, isActive: true }, { fields: ["id"] })).map((p) => p.id));
			const archived = [...variants.values()].find((v) => !active.has(v.productId));
			if (archived) throw new ConflictError("The product is no longer sold", "PRODUCT_ARCHIVED", { variantId: archived.id });
			return variants;
		},

		/**
		 * A stock change outside reservations (adjustment, return). One conditional update (a decrement
		 * only where enough is left) moves the stock and parks the movement on the variant; then its
		 * audit row is written and the parked movement cleared. A crash in between leaves it parked:
		 * the sweeper, or the variant's next movement, writes the missing row (`finishMove`). One
		 * parked movement per variant at a time, so others wait for it. With a key, a repeated call
		 * moves the stock once. Null when the variant is unknown or its stock was short.
		 */
		async moveStock(ctx: Context, variantId: string, delta: number, type: MovementType, reference: string, extra: MovementExtra = {}) {
			const move: ParkedMove = { key: extra.key ?? `move:${newId()}`, delta, type, reference, ...(extra.userId ? { userId: extra.userId } : {}), since: Date.now() };
			// A keyed change whose row is written has moved the stock already.
			if (extra.key && (await this.db.inventory_transactions.findOne({ key: move.key }))) return this.db.variants.findById(variantId);
			const deadline = Date.now() + MOVE_WAIT_MS;
			for (;;) {
				const enough = delta < 0 ? { stock: { $gte: -delta } } : {};
				const variant = await this.db.variants.updateOne({ id: variantId, ...enough, pendingMove: { $exists: false } }, { $inc: { stock: delta }, $set: { updatedAt: new Date(move.since), pendingMove: move } });
				if (variant) {
					await this.finishMove(ctx, variant, move);
					return variant;
				}
				const current = await this.db.variants.findById(variantId);
				if (!current) return null;
				const parked = current.pendingMove;
				if (!parked) {
					if (delta < 0 && current.stock < -delta) return null;
					continue;
				}
				// Our own key, moved by an earlier call that died before its row: only the row is missing.
				if (parked.key === move.key) {
					await this.finishMove(ctx, current, parked);
					return current;
				}
				if (Date.now() - parked.since > this.settings.reservationSweep.staleAfterMs) await this.finishMove(null, current, parked, true);
				else if (Date.now() > deadline) throw new ConflictError("Another stock change of this variant is being recorded, retry", "STOCK_CHANGE_IN_PROGRESS", { variantId });
				else await sleep(MOVE_POLL_MS);
			}
		},

		/** Writes a parked movement's audit row (once, by its key) and clears it from the variant. */
		async finishMove(ctx: Context | null, variant: Row<HeldVariant>, move: ParkedMove, recovered = false) {
			await this.recordMovement(ctx, variant, move.delta, move.type, move.reference, { key: move.key, userId: move.userId, recovered });
			await this.db.variants.updateOne({ id: variant.id, "pendingMove.key": move.key }, { $unset: { pendingMove: true } });
		},

		/** Movements parked longer than `staleAfterMs` (their process died): their rows are written. */
		async sweepParkedMoves(now = new Date()) {
			const parked = await this.db.variants.find({ "pendingMove.since": { $lt: now.getTime() - this.settings.reservationSweep.staleAfterMs } }, { limit: SWEEP_BATCH });
			for (const v of parked) {
				await this.finishMove(null, v, v.pendingMove!, true);
				this.logger.info(`Recorded the stock movement ${v.pendingMove!.key} of variant ${v.id} that a crash left without its audit row.`);
			}
			return { finished: parked.length };
		},

		/** The audit row of a stock change (the trail of a variant sums to its stock) and its event, once per key. */
		async recordMovement(ctx: Context | null, variant: Row<Variant>, delta: number, type: MovementType, reference: string, extra: MovementExtra = {}) {
			const { id: variantId, productId, stock } = variant;
			const { userId, key, recovered } = extra;
			const row = { variantId, productId, delta, type, reference, stockAfter: stock, ...(userId ? { userId } : {}), ...(key ? { key } : {}), ...(recovered ? { recovered } : {}), createdAt: new Date() };
			// Whoever writes the row announces the change, so a repeated repair announces nothing twice.
			if (await this.writeAuditRow(row)) await this.announce(ctx, "inventory.changed", { variantId, productId, stock, delta, type, reference });
		},

		/** False when a row with the same key is already there. */
		async writeAuditRow(row: Record<string, unknown>) {
			try {
				await this.db.inventory_transactions.insert(row);
				return true;
			} catch (err) {
				if ((err as ConflictError).type !== "DUPLICATE") throw err;
				return false;
			}
		},

		/** Null when this call now owns the order's reservation; otherwise the one already there. */
		async claimReservation(id: string, orderId: string, items: Reservation["items"]) {
			try {
				const now = new Date();
				await this.db.reservations.insert({ id, orderId, status: "pending", items, holdsOpen: true, createdAt: now, updatedAt: now });
				return null;
			} catch (err) {
				if ((err as ConflictError).type !== "DUPLICATE") throw err;
				return (await this.db.reservations.findOne({ orderId })) ?? "retry";
			}
		},

		/** One line of a reservation: the decrement and the hold that proves it happened, in one update (invariant H). */
		async takeLine(ctx: Context, r: ReservationRef, line: StockLine) {
			const hold = holdField(r.id);
			const variant = await this.db.variants.updateOne(
				{ id: line.variantId, stock: { $gte: line.quantity }, [hold]: { $exists: false } },
				{ $inc: { stock: -line.quantity }, $set: { [hold]: line.quantity, updatedAt: new Date() } },
			);
			if (!variant) return false;
			await this.recordMovement(ctx, variant, -line.quantity, "reservation", r.orderId, { key: movementKey(r.id, line.variantId, "reservation") });
			return true;
		},

		/** Puts a line back only while the reservation holds it: the hold goes with the stock, so a repeat puts back nothing. */
		async putBackLine(ctx: Context | null, r: ReservationRef, line: StockLine) {
			const hold = holdField(r.id);
			const variant = await this.db.variants.updateOne({ id: line.variantId, [hold]: { $gt: 0 } }, { $inc: { stock: line.quantity }, $unset: { [hold]: true }, $set: { updatedAt: new Date() } });
			if (!variant) return false;
			await this.recordMovement(ctx, variant, line.quantity, "release", r.orderId, { key: movementKey(r.id, line.variantId, "release") });
			return true;
		},

		async putBackLines(ctx: Context | null, r: ReservationRef, lines: StockLine[]) {
			for (const line of lines) await this.putBackLine(ctx, r, line);
		},

		/** A sold order comes back: its stock returns (the holds went at commit, or go now if that commit was cut short). */
		async returnLines(ctx: Context, r: Row<Reservation>) {
			for (const line of r.items) await this.moveStock(ctx, line.variantId, line.quantity, "return", r.orderId, { key: movementKey(r.id, line.variantId, "return") });
			if (r.holdsOpen) await this.settleSale(r);
		},

		/** The stock left at reservation; the sale rows record what became of it (delta 0), and the holds go. */
		async settleSale(r: Row<Reservation>) {
			const now = new Date();
			for (const line of r.items) {
				await this.writeAuditRow({ variantId: line.variantId, productId: line.productId, delta: 0, quantity: line.quantity, type: "sale", reference: r.orderId, key: movementKey(r.id, line.variantId, "sale"), createdAt: now });
				const hold = holdField(r.id);
				await this.db.variants.updateOne({ id: line.variantId, [hold]: { $exists: true } }, { $unset: { [hold]: true } });
			}
		},

		/** The reservation's line work is done: the sweeper leaves it alone from now on. */
		async closeReservation(r: ReservationRef) {
			await this.db.reservations.updateOne({ id: r.id, holdsOpen: true }, { $set: { holdsOpen: false } });
		},

		/** A reserve that found its reservation cancelled has put its lines back: it completes the release. */
		async finishCancelled(r: ReservationRef) {
			const released = await this.db.reservations.updateOne({ id: r.id, status: "cancelling" }, { $set: { status: "released", updatedAt: new Date() } });
			if (released) await this.closeReservation(released);
		},

		/** Rolls back one line of a reservation claimed by the sweeper, whatever point a crash stopped at. */
		async rollbackLine(r: Row<Reservation>, line: Reservation["items"][number]) {
			const hold = holdField(r.id);
			// Fence a line the reservation does not hold: a reserve of it still running late cannot take it now.
			const fenced = await this.db.variants.updateOne({ id: line.variantId, [hold]: { $exists: false } }, { $set: { [hold]: 0 } });
			const variant = fenced ?? (await this.db.variants.findById(line.variantId));
			if (!variant) return;
			const takeKey = movementKey(r.id, line.variantId, "reservation");
			const putBackKey = movementKey(r.id, line.variantId, "release");
			const rows = new Set((await this.db.inventory_transactions.find({ key: { $in: [takeKey, putBackKey] } }, { fields: ["key"] })).map((t) => t.key));
			const held = !fenced && (variant.holds?.[r.id] ?? 0) > 0;
			for (const step of rollbackSteps({ held, takeRow: rows.has(takeKey), putBackRow: rows.has(putBackKey) })) {
				if (step === "recordTake") {
					await this.recordMovement(null, variant, -line.quantity, "reservation", r.orderId, { key: takeKey, recovered: true });
				} else if (step === "putBack") {
					// A put-back writes its own row; when a late reserve put it back meanwhile, the next step completes theirs.
					if (await this.putBackLine(null, r, line)) return;
				} else {
					const now = (await this.db.variants.findById(line.variantId)) ?? variant;
					await this.recordMovement(null, now, line.quantity, "release", r.orderId, { key: putBackKey, recovered: true });
				}
			}
		},

		/**
		 * Finishes reservations whose stock work stopped (a crash) more than `staleAfterMs` ago: rolls
		 * back pending or cancelled ones line by line, settles sold ones. Never touches `reserved`.
		 */
		async sweepReservations(now = new Date()) {
			const cutoff = new Date(now.getTime() - this.settings.reservationSweep.staleAfterMs);
			const stale = await this.db.reservations.find({ holdsOpen: true, status: { $in: SWEPT_STATUSES }, updatedAt: { $lt: cutoff } }, { sort: { updatedAt: 1 }, limit: SWEEP_BATCH });
			let swept = 0;
			for (const found of stale) {
				const next = SWEEP_TRANSITIONS[found.status]!;
				// The claim: one conditional update moves updatedAt past the cutoff, so of two sweepers
				// (on two nodes) only one does the work, and a reserve still running sees it is no longer pending.
				const r = await this.db.reservations.updateOne(
					{ id: found.id, status: found.status, holdsOpen: true, updatedAt: { $lt: cutoff } },
					{ $set: { status: next.to, updatedAt: now, ...(next.reason ? { reason: next.reason } : {}) } },
				);
				if (!r) continue;
				try {
					if (next.work === "rollback") for (const line of r.items) await this.rollbackLine(r, line);
					else await this.settleSale(r);
					await this.closeReservation(r);
					swept++;
					this.logger.info(`Swept the ${found.status} reservation of order ${r.orderId} (${next.work}).`);
				} catch (err) {
					// Still open: a later sweep, after the threshold, takes it again from where this one stopped.
					this.logger.warn(`Sweeping the reservation of order ${r.orderId} failed:`, (err as Error).message);
				}
			}
			return { swept };
		},

		/** The demo catalog on the first start of the embedded default (never under tests). */
		async seedDB() {
			const cfg = readConfig();
			// SEED_DEMO=false starts with an empty shop.
			if (cfg.isTest || !cfg.seedDemo) return;
			if ((await this.db.products.count({})) > 0) return;
			try {
				const written = await writeCatalog(this.db, generateCatalog());
				this.logger.info(`Seeded the demo catalog: ${written.products} products, ${written.variants} variants.`);
			} catch (err) {
				// Another node seeding at the same moment wins the unique indexes; its catalog is the same.
				if ((err as ConflictError).type !== "DUPLICATE") throw err;
			}
		},
	},

	async started() {
		const { intervalMs } = this.settings.reservationSweep;
		if (!intervalMs) return;
		// One sweep at a time per node; other nodes are kept off the same reservation by the claim.
		const sweep = () => {
			this.sweeping ??= this.sweepReservations()
				.then(() => this.sweepParkedMoves())
				.catch((err: Error) => this.logger.warn(`Sweeping stale reservations and stock movements failed: ${err.message}`))
				.finally(() => (this.sweeping = undefined));
			return this.sweeping;
		};
		// What a crash of the previous run left behind.
		await sweep();
		this.sweepTimer = setInterval(sweep, intervalMs);
		this.sweepTimer.unref();
	},

	async stopped() {
		clearInterval(this.sweepTimer);
		await this.sweeping;
	},
};

export default ProductsService;
