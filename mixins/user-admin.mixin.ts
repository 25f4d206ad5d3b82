/**
 * The shop's staff's view of the accounts, split out of services/users.service.ts for size; only that
 * service uses it: find an account (by email, to act on a request that reached the shop another way),
 * give it another role, erase it. Erased accounts are not listed and answer 404, as everywhere.
 *
 * An admin cannot change their own role: the shop always keeps the admin who asks. Two admins demoting
 * each other at once would leave none; the count after the change catches that, and the change is put
 * back (409 LAST_ADMIN).
 */
import type { Context, ServiceSchema } from "moleculer";
import type { Collection, Entity, Query } from "./collection";
import { me, type ShopMeta } from "./types";
import { ConflictError } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { ERASURE_CONFLICTS, normalizeEmail, publicUser } from "../lib/user-records";
import type { ShopConfig } from "../lib/config";
import { absentOr } from "../lib/store-queries";

type Ctx<P = Record<string, any>> = Context<P, ShopMeta>;
type Role = "customer" | "admin";
const ROLES: Role[] = ["customer", "admin"];

/** Accounts that were not erased: an erased one keeps its record (orders point to it) under `deletedAt`. */
const NOT_ERASED: Query = absentOr("deletedAt");

/** What the host (users.service.ts) provides. */
export interface UserAdminHost {
	requireUser(id: string): Promise<Entity>;
	changeRole(userId: string, role: Role): Promise<void>;
	eraseAccount(ctx: Ctx, user: Entity): Promise<void>;
}
interface UserAdminVars {
	db: Record<"users", Collection>;
	cfg: ShopConfig;
}

const userAdminSchema: Partial<ServiceSchema<Record<string, never>, UserAdminHost, UserAdminVars>> = {
	actions: {
		listUsers: {
			rest: "GET /users",
			openapi: { response: { list: "User" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				email: { type: "string", trim: true, min: 1, max: 254, optional: true },
				role: { type: "string", enum: ROLES, optional: true },
				...pageParams,
			},
			async handler(ctx: Ctx<{ email?: string; role?: Role; page?: number; pageSize?: number }>) {
				const { email, role, page, pageSize } = ctx.params;
				const query: Query = { ...NOT_ERASED };
				// Stored normalised (lower case): found as a customer would type it.
				if (email) query.email = normalizeEmail(email);
				if (role) query.role = role;
				const w = pageWindow(page, pageSize);
				const [rows, total] = await this.db.users.findWithCount(query, { sort: { createdAt: -1 }, offset: w.offset, limit: w.limit });
				return toPage(rows.map(publicUser), total, w.page, w.pageSize);
			},
		},

		getUser: {
			rest: "GET /users/:id",
			openapi: { response: "User" },
			roles: ["admin"],
			params: { $$strict: "remove", id: { type: "string", min: 1, max: 100 } },
			async handler(ctx: Ctx<{ id: string }>) {
				return publicUser(await this.requireUser(ctx.params.id));
			},
		},

		setUserRole: {
			rest: "PATCH /users/:id/role",
			openapi: { response: "User", responses: { 409: "Your own role (OWN_ROLE), the last admin (LAST_ADMIN), an unverified address made admin (EMAIL_NOT_VERIFIED), the ADMIN_EMAIL admin made customer (CONFIGURED_ADMIN)" } },
			roles: ["admin"],
			params: { $$strict: "remove", id: { type: "string", min: 1, max: 100 }, role: { type: "string", enum: ROLES } },
			async handler(ctx: Ctx<{ id: string; role: Role }>) {
				const { id, role } = ctx.params;
				const user = await this.requireUser(id);
				if (user.id === me(ctx).id) throw new ConflictError("You cannot change your own role: another admin can", "OWN_ROLE");
				if (user.role === role) return publicUser(user);
				// As ADMIN_EMAIL's: an address nobody proved is anyone's who registered it first.
				if (role === "admin" && !user.isVerified) throw new ConflictError("The account's email address is not verified: anyone may have registered it", "EMAIL_NOT_VERIFIED");
				// The next start would make it admin again (and, with ADMIN_PASSWORD, set that password).
				if (role !== "admin" && this.cfg.adminEmail && normalizeEmail(this.cfg.adminEmail) === user.email) {
					throw new ConflictError("This admin is named by the ADMIN_EMAIL setting: change the setting first", "CONFIGURED_ADMIN");
				}
				// Their sessions' cached checks go with it: a demoted admin's tokens stop working at once.
				await this.changeRole(user.id, role);
				if (role !== "admin" && (await this.db.users.count({ ...NOT_ERASED, role: "admin" })) === 0) {
					await this.changeRole(user.id, "admin");
					throw new ConflictError("The shop would be left without an admin", "LAST_ADMIN");
				}
				this.logger.info(`Account ${user.id} is now ${role}, by admin ${me(ctx).id}.`);
				return publicUser({ ...user, role });
			},
		},

		/** An admin erases a customer's account (a request that reached the shop another way), as the customer would. */
		deleteUser: {
			rest: "POST /users/:id/delete",
			openapi: { success: 204, responses: { 409: ERASURE_CONFLICTS } },
			roles: ["admin"],
			params: { $$strict: "remove", id: { type: "string", min: 1, max: 100 } },
			async handler(ctx: Ctx<{ id: string }>) {
				const user = await this.requireUser(ctx.params.id);
				await this.eraseAccount(ctx, user);
				this.logger.info(`Account ${user.id} deleted by admin ${me(ctx).id}.`);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},
	},
};

export const UserAdminMixin = userAdminSchema as Partial<ServiceSchema>;
