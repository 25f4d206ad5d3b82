/**
 * The customer's address book and wishlist, split out of services/users.service.ts for size; only
 * that service uses it. An address's `defaultFor` ("<userId>:<type>", on the default only) sits
 * under a sparse unique index, so each type has at most one default (see makeDefault); and a
 * customer with addresses of a type has one (see ensureDefault). Wishlist entries are unique per
 * (userId, productId), so adding twice keeps one.
 *
 * The host declares `user_addresses` and `user_wishlist` in its DbMixin (both are in `userCollections`
 * of lib/user-records.ts).
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import type { Collection, Entity, Query } from "./collection";
import { me, type ShopMeta } from "./types";
import { ConflictError, NotFoundError } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { ADDRESS_TYPES, publicAddress } from "../lib/user-records";
import { oneLineRule } from "../lib/param-rules";

// Each field is a line of a shipping label and of the order's messages: one line, as it is written.
const addressRules = {
	type: { type: "enum", values: ADDRESS_TYPES },
	line1: { type: "string", trim: true, min: 1, max: 200, ...oneLineRule },
	line2: { type: "string", trim: true, max: 200, optional: true, nullable: true, ...oneLineRule },
	city: { type: "string", trim: true, min: 1, max: 100, ...oneLineRule },
	state: { type: "string", trim: true, max: 100, optional: true, nullable: true, ...oneLineRule },
	postalCode: { type: "string", trim: true, min: 1, max: 20, ...oneLineRule },
	country: { type: "string", trim: true, min: 2, max: 56, ...oneLineRule },
	isDefault: { type: "boolean", optional: true },
};
const addressPatchRules = Object.fromEntries(Object.entries(addressRules).map(([k, r]) => [k, { ...r, optional: true }]));

/** Addresses one customer may keep: plenty for a person, and a bound on what one account can store. */
export const MAX_ADDRESSES = 50;

type Ctx<P = Record<string, any>> = Context<P, ShopMeta>;

export interface UserAddressBookMethods {
	requireAddress(userId: string, addressId: string): Promise<Entity>;
	makeDefault(address: Entity): Promise<Entity>;
	ensureDefault(userId: string, type: string, opts?: { candidate?: Entity; passOver?: string }): Promise<Entity | null>;
}

interface UserAddressBookVars {
	db: Record<"user_addresses" | "user_wishlist", Collection>;
}
type UserAddressBookThis = Service & UserAddressBookMethods & UserAddressBookVars;

const userAddressBookSchema: Partial<ServiceSchema<Record<string, never>, UserAddressBookMethods, UserAddressBookVars>> = {
	actions: {
		listAddresses: {
			rest: "GET /me/addresses",
			openapi: { response: { list: "Address" } },
			auth: "required",
			params: { ...pageParams },
			async handler(ctx: Ctx<{ page?: number; pageSize?: number }>) {
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query = { userId: me(ctx).id };
				const [rows, total] = await this.db.user_addresses.findWithCount(query, { sort: { createdAt: 1 }, offset: w.offset, limit: w.limit });
				return toPage(rows.map(publicAddress), total, w.page, w.pageSize);
			},
		},

		getMyAddress: {
			rest: "GET /me/addresses/:id",
			openapi: { response: "Address" },
			auth: "required",
			params: { id: "string" },
			async handler(ctx: Ctx<{ id: string }>) {
				return publicAddress(await this.requireAddress(me(ctx).id, ctx.params.id));
			},
		},

		createAddress: {
			rest: "POST /me/addresses",
			openapi: { success: 201, response: "Address", responses: { 409: `The address book is full (${MAX_ADDRESSES} addresses)` } },
			auth: "required",
			params: { $$strict: "remove", ...addressRules },
			async handler(ctx: Ctx<Record<string, any>>) {
				const userId = me(ctx).id;
				const { isDefault, ...fields } = ctx.params;
				const full = () => new ConflictError(`An address book holds at most ${MAX_ADDRESSES} addresses: remove one first`, "ADDRESS_BOOK_FULL", { limit: MAX_ADDRESSES });
				if ((await this.db.user_addresses.count({ userId })) >= MAX_ADDRESSES) throw full();
				const now = new Date();
				const address = await this.db.user_addresses.insert({ line2: null, state: null, ...fields, userId, createdAt: now, updatedAt: now });
				// Parallel requests all passed the count above: each checks again once stored, and one over takes itself back.
				if ((await this.db.user_addresses.count({ userId })) > MAX_ADDRESSES) {
					await this.db.user_addresses.removeOne({ id: address.id, userId });
					await this.ensureDefault(userId, address.type);
					throw full();
				}
				// The first address of a type is its default, as a customer would expect, and so is one added
				// to a type left without (isDefault: false passes it to another address of the type, if any).
				const saved = isDefault
					? await this.makeDefault(address)
					: ((await this.ensureDefault(userId, address.type, isDefault === false ? { passOver: address.id } : { candidate: address })) ?? address);
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/me/addresses/${saved.id}`;
				return publicAddress(saved);
			},
		},

		updateAddress: {
			rest: "PATCH /me/addresses/:id",
			openapi: { response: "Address" },
			auth: "required",
			params: { $$strict: "remove", id: "string", ...addressPatchRules },
			async handler(ctx: Ctx<Record<string, any>>) {
				const { id, isDefault, ...fields } = ctx.params;
				const current = await this.requireAddress(me(ctx).id, id);
				const retyped = fields.type !== undefined && fields.type !== current.type;
				const update: Query = { $set: { ...fields, updatedAt: new Date() } };
				// A default stops being one when asked, or when it moves to the other type.
				if (current.defaultFor && (isDefault === false || retyped)) update.$unset = { defaultFor: true };
				const saved = await this.db.user_addresses.updateOne({ id, userId: current.userId }, update);
				if (!saved) throw new NotFoundError("Address");
				// The type it left hands its default on, whatever it becomes in its new type.
				if (retyped && current.defaultFor) await this.ensureDefault(current.userId, current.type);
				if (isDefault) return publicAddress(await this.makeDefault(saved));
				// In its type it becomes the default if there is none (one asked to stop being the default
				// passes it to another address, when the type has one).
				const opts = isDefault === false ? { passOver: saved.id } : retyped ? { candidate: saved } : {};
				const madeDefault = await this.ensureDefault(saved.userId, saved.type, opts);
				return publicAddress(madeDefault?.id === saved.id ? madeDefault : saved);
			},
		},

		removeAddress: {
			rest: "DELETE /me/addresses/:id",
			openapi: { success: 204 },
			auth: "required",
			params: { id: "string" },
			async handler(ctx: Ctx<{ id: string }>) {
				const userId = me(ctx).id;
				const address = await this.requireAddress(userId, ctx.params.id);
				const removed = await this.db.user_addresses.removeOne({ id: address.id, userId });
				if (!removed) throw new NotFoundError("Address");
				// The default goes to the most recently created address left of its type.
				await this.ensureDefault(userId, address.type);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		listWishlist: {
			rest: "GET /me/wishlist",
			openapi: { response: { list: "WishlistItem" } },
			auth: "required",
			params: { ...pageParams },
			async handler(ctx: Ctx<{ page?: number; pageSize?: number }>) {
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query = { userId: me(ctx).id };
				const [rows, total] = await this.db.user_wishlist.findWithCount(query, { sort: { addedAt: -1 }, offset: w.offset, limit: w.limit });
				const products = rows.length ? await ctx.call<any[], { ids: string[] }>("products.getMany", { ids: rows.map((r) => r.productId) }) : [];
				const byId = new Map(products.map((p) => [p.id, p]));
				const items = rows.map((r) => ({ productId: r.productId, addedAt: new Date(r.addedAt).toISOString(), product: byId.get(r.productId) ?? null }));
				return toPage(items, total, w.page, w.pageSize);
			},
		},

		addToWishlist: {
			rest: "POST /me/wishlist",
			openapi: { success: 201, response: "WishlistItem", responses: { 404: "Unknown product" } },
			auth: "required",
			params: { $$strict: "remove", productId: { type: "string", min: 1, max: 64 } },
			async handler(ctx: Ctx<{ productId: string }>) {
				const userId = me(ctx).id;
				const [product] = await ctx.call<any[], { ids: string[] }>("products.getMany", { ids: [ctx.params.productId] });
				if (!product || product.isActive === false) throw new NotFoundError("Product");
				// The unique (userId, productId) index makes adding twice keep one entry.
				const entry = await this.db.user_wishlist.insert({ userId, productId: product.id, addedAt: new Date() }).catch(async (err: ConflictError) => {
					if (err.code !== 409) throw err;
					return this.db.user_wishlist.findOne({ userId, productId: product.id });
				});
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/me/wishlist`;
				return { productId: product.id, addedAt: new Date(entry!.addedAt).toISOString(), product };
			},
		},

		removeFromWishlist: {
			rest: "DELETE /me/wishlist/:productId",
			openapi: { success: 204 },
			auth: "required",
			params: { productId: "string" },
			async handler(ctx: Ctx<{ productId: string }>) {
				await this.db.user_wishlist.removeOne({ userId: me(ctx).id, productId: ctx.params.productId });
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		// Internal actions (docs/services.md § users)

		getAddress: {
			visibility: "public",
			params: { userId: "string", addressId: "string" },
			async handler(ctx: Context<{ userId: string; addressId: string }>) {
				return publicAddress(await this.requireAddress(ctx.params.userId, ctx.params.addressId));
			},
		},
	},

	methods: {
		async requireAddress(userId: string, addressId: string): Promise<Entity> {
			const address = await this.db.user_addresses.findOne({ id: addressId, userId });
			if (!address) throw new NotFoundError("Address");
			return address;
		},

		/** Makes an address its type's default: the previous default gives the slot up first. */
		async makeDefault(address: Entity): Promise<Entity> {
			const defaultFor = `${address.userId}:${address.type}`;
			for (let attempt = 0; ; attempt++) {
				await this.db.user_addresses.updateMany({ defaultFor, id: { $ne: address.id } }, { $unset: { defaultFor: true } });
				try {
					const saved = await this.db.user_addresses.updateOne({ id: address.id, userId: address.userId }, { $set: { defaultFor } });
					if (!saved) throw new NotFoundError("Address");
					return saved;
				} catch (err) {
					// A concurrent default took the slot between the two writes: the last one wins.
					if ((err as ConflictError).code !== 409 || attempt >= 2) throw err;
				}
			}
		},

		/**
		 * Gives `type` a default when it has none: `candidate` (a new or retyped address), else the most
		 * recently created address of the type, passing over `passOver` unless it is the only one. The
		 * unique index on `defaultFor` settles races: a claim finding the slot taken leaves it to its
		 * holder. Returns the address made default, or null when the type had one (or has no address).
		 */
		async ensureDefault(userId: string, type: string, opts: { candidate?: Entity; passOver?: string } = {}): Promise<Entity | null> {
			const defaultFor = `${userId}:${type}`;
			let candidate = opts.candidate;
			for (let attempt = 0; attempt < 3; attempt++) {
				if (!candidate) {
					if (await this.db.user_addresses.findOne({ defaultFor })) return null;
					const latest = await this.db.user_addresses.find({ userId, type }, { sort: { createdAt: -1 }, limit: 2 });
					candidate = latest.find((a) => a.id !== opts.passOver) ?? latest[0];
					if (!candidate) return null;
				}
				try {
					// Only while it is still this customer's address of this type.
					const saved = await this.db.user_addresses.updateOne({ id: candidate.id, userId, type }, { $set: { defaultFor } });
					if (saved) return saved;
				} catch (err) {
					if ((err as ConflictError).code === 409) return null;
					throw err;
				}
				// Removed or retyped meanwhile: look again.
				candidate = undefined;
			}
			return null;
		},
	} satisfies UserAddressBookMethods & ThisType<UserAddressBookThis>,
};

/** Checked against its own `this` above; the host takes it as any other mixin. */
export const UserAddressBookMixin: Partial<ServiceSchema<any, any, any, any>> = userAddressBookSchema;
