/**
 * The catalog's category actions (list as a tree, create, update), split out of
 * services/products.service.ts for size; only that service uses it. A category never moves below
 * itself (see wouldCreateCycle in lib/category-tree.ts), every write cleans the service's cache, and
 * a change of name, slug or place announces the products below it (`category.updated`, in chunks of
 * CATEGORY_EVENT_CHUNK ids) for search.
 *
 * The host declares the `categories` collection in its DbMixin (in `productCollections`: its
 * product actions and the seed read it too) and the methods of CatalogCategoryHostMethods, which
 * its product actions share.
 */
import type { Context, ServiceSchema } from "moleculer";
import type { Collection, Entity } from "./collection";
import type { ShopMeta } from "./types";
import { NotFoundError, invalidField } from "../lib/errors";
import { multilineRule, oneLineRule } from "../lib/param-rules";
import { slugRule } from "../lib/catalog-rules";
import { buildCategoryTree, descendantIds, wouldCreateCycle, type Category } from "../lib/category-tree";

type Ctx<P = Record<string, never>> = Context<P, ShopMeta>;

/** What services/products.service.ts itself provides to this mixin (its product actions use them too). */
export interface CatalogCategoryHostMethods {
	loadCategories(): Promise<Array<Category & Entity>>;
	/** A slug made from the name, numbered when taken ("tote-bag-2"). */
	freeSlug(collection: Collection, name: string): Promise<string>;
	/** A 409 DUPLICATE when another record of the collection has the slug. */
	assertSlugFree(collection: Collection, slug: string, exceptId?: string): Promise<void>;
	/** Emits a catalog event (with an eventId). */
	announce(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<void>;
}

/**
 * Product ids per `category.updated` event. A root category of a large shop has tens of thousands of
 * products, and one event carrying them all outgrows what a transporter takes (NATS: 1 MB by default).
 */
export const CATEGORY_EVENT_CHUNK = 1000;

interface CatalogCategoryVars extends CatalogCategoryHostMethods {
	db: { categories: Collection<Category & Entity>; products: Collection<{ categoryId?: string | null } & Entity> };
	cleanCache(): Promise<void>;
}

interface CatalogCategoryMethods {
	announceProductsBelow(ctx: Context, categoryId: string, categoryIds: string[]): Promise<void>;
}

const catalogCategorySchema: Partial<ServiceSchema<Record<string, never>, CatalogCategoryMethods, CatalogCategoryVars>> = {
	actions: {
		listCategories: {
			rest: "GET /categories",
			openapi: { response: "CategoryTree" },
			cache: true,
			publicCache: true,
			params: { $$strict: "remove" },
			async handler() {
				return buildCategoryTree(await this.loadCategories());
			},
		},

		createCategory: {
			rest: "POST /categories",
			openapi: { success: 201, response: "Category", responses: { 409: "Slug already in use" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				name: { type: "string", trim: true, min: 1, max: 100, ...oneLineRule },
				slug: { ...slugRule, optional: true },
				parentId: { type: "string", min: 1, optional: true, nullable: true },
				description: { type: "string", max: 2000, optional: true, ...multilineRule },
				position: { type: "number", integer: true, min: -1_000_000, max: 1_000_000, optional: true },
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
			openapi: { response: "Category", responses: { 409: "Slug already in use" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				id: "string",
				name: { type: "string", trim: true, min: 1, max: 100, optional: true, ...oneLineRule },
				slug: { ...slugRule, optional: true },
				parentId: { type: "string", min: 1, optional: true, nullable: true },
				description: { type: "string", max: 2000, optional: true, ...multilineRule },
				position: { type: "number", integer: true, min: -1_000_000, max: 1_000_000, optional: true },
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
				const before = all.find((c) => c.id === id)!;
				const updated = await this.db.categories.updateById(id, { $set: { ...changes, updatedAt: new Date() } });
				await this.cleanCache();
				// Every product below it carries the category's names and slugs in its search document.
				if ((["name", "slug", "parentId"] as const).some((k) => k in changes && changes[k] !== before[k])) {
					await this.announceProductsBelow(ctx, id, descendantIds(all, id));
				}
				return updated;
			},
		},
	},

	methods: {
		/**
		 * `category.updated` for every product in these categories, a chunk of ids per event (each with
		 * the changed category's id). The change is stored already, so a failed announcement is logged,
		 * not the admin's error: search's periodic full rebuild brings the rest up to date.
		 */
		async announceProductsBelow(ctx: Context, categoryId: string, categoryIds: string[]) {
			let announced = 0;
			let after = "";
			try {
				for (;;) {
					const page = await this.db.products.find({ categoryId: { $in: categoryIds }, ...(after ? { id: { $gt: after } } : {}) }, { fields: ["id"], sort: { id: 1 }, limit: CATEGORY_EVENT_CHUNK });
					if (!page.length) return;
					await this.announce(ctx, "category.updated", { categoryId, productIds: page.map((p) => p.id) });
					announced += page.length;
					if (page.length < CATEGORY_EVENT_CHUNK) return;
					after = page[page.length - 1].id;
				}
			} catch (err) {
				this.logger.error(`category.updated of category ${categoryId} went out for ${announced} products only; search's next full rebuild updates the rest:`, err);
			}
		},
	},
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const CatalogCategoriesMixin: Partial<ServiceSchema<any, any, any, any>> = catalogCategorySchema;
