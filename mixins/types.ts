/**
 * Action properties our gateway reads (who may call an action over HTTP) and the broker's retry check
 * reads, what the gateway puts in ctx.meta, and the signed-in user.
 */
import type {} from "moleculer-web";
import type { OpenApiNotes } from "../lib/openapi";

declare module "moleculer" {
	// Supported by the broker (called with the schema after mixins merge) but missing from its types.
	// eslint-disable-next-line @typescript-eslint/no-unused-vars
	interface ServiceSchema<TSettings, TMethods, TVars, TThis> {
		merged?: (schema: ServiceSchema) => void;
	}

	interface ActionSchema {
		/** "required": a valid session; "optional": a token is checked when present (guest carts). */
		auth?: "required" | "optional";
		/** Roles allowed; implies auth "required". */
		roles?: Array<"customer" | "admin">;
		/** One line for the OpenAPI document. */
		description?: string;
		/** Which rate-limit bucket the gateway counts this action in. */
		rateLimit?: "auth" | "default";
		/**
		 * The gateway may keep the encoded answer of an anonymous GET and serve it without calling the
		 * action: the answer depends only on the URL, and the service's cleanCache() broadcasts
		 * `cache.clean.<service>` whenever it changes (see lib/response-cache.ts).
		 */
		publicCache?: boolean;
		/** Whether the action may run twice at once, so that a timed-out call is sent again (mixins/retry-policy.ts: by default GET routes and internal actions may, route writes may not). */
		repeatable?: boolean;
		/** What the route's OpenAPI description cannot read from the rest: statuses it sets or throws, headers it reads. */
		openapi?: OpenApiNotes;
		/** An expired (but genuine) access token still names the user and session: signing out ends the session it was given for. */
		acceptsExpiredToken?: boolean;
		/** ms a call may take unless its caller says otherwise (read by Moleculer's Timeout middleware, missing from its types). */
		timeout?: number;
	}
}

/** What the gateway puts in ctx.meta for every HTTP call. */
export interface AuthUser {
	id: string;
	role: "customer" | "admin";
	sid: string;
}

/** The signed-in user of an `auth: "required"` action (the gateway has checked the session). */
export const me = (ctx: { meta: ShopMeta }): AuthUser => ctx.meta.user!;

export interface ShopMeta {
	user?: AuthUser | null;
	/** X-Cart-Id of a guest cart. */
	cartId?: string;
	idempotencyKey?: string;
	/** Client address, for rate limits and audit. */
	ip?: string;
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	/** Location header of a 201. */
	$location?: string;
	/** Raw body of webhook routes. */
	rawBody?: string;
	/** The request is a HEAD (routed as its GET): nobody looks at the answer, so it is no view. */
	headRequest?: boolean;
	headers?: Record<string, string | string[] | undefined>;
}
