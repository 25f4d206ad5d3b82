/**
 * Browsers' push subscriptions (Web Push), split out of services/notifications.service.ts for size;
 * only that service uses it. The storefront fetches the shop's VAPID public key, subscribes the
 * browser with it (PushManager.subscribe) and hands the subscription to the shop; order news then
 * goes to each of the customer's browsers as well as by email and SMS.
 *
 * A subscription belongs to one browser, so it is unique by endpoint: subscribing again updates it,
 * and another account signing in on the same browser takes it over. An account keeps its newest
 * MAX_PUSH_SUBSCRIPTIONS; older ones go (browsers renew theirs, and stale ones are never used).
 *
 * The VAPID keys: VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY, or else a pair made on the first start
 * and kept in the store (`notification_keys`), so that push works without setup and every node on
 * a shared store signs with the same pair. The host declares both collections in its DbMixin.
 */
import type { Context, ServiceSchema } from "moleculer";
import { generateVAPIDKeys } from "web-push";
import type { Collection, Entity } from "./collection";
import { me, type ShopMeta } from "./types";
import { ServiceUnavailableError, invalidField, isDuplicate } from "../lib/errors";
import { pageParams } from "../lib/pagination";
import { keepOwnedDevice, pageOfOwnedDevices, removeOwnedDevice } from "./owned-devices";
import { absentOr } from "../lib/store-queries";
import { canonicalPushEndpoint, pushKeysProblem, type PushHost } from "../lib/web-push";
import type { VapidKeys } from "../adapters/channels/web-push-channel";

/** Browsers one account keeps subscribed: a person's devices, and a bound on what one account stores. */
export const MAX_PUSH_SUBSCRIPTIONS = 20;

type Ctx<P = Record<string, any>> = Context<P, ShopMeta>;

interface SubscribeParams {
	endpoint: string;
	keys: { p256dh: string; auth: string };
	expirationTime?: number | null;
}

export interface PushSubscriptionsMethods {
	/** The account's subscriptions a message goes to, newest first. */
	pushSubscriptionsOf(userId: string): Promise<Entity[]>;
	/** The keys from the environment, else those kept in the store (made and kept on the first call). */
	loadVapidKeys(fromEnv: VapidKeys | null): Promise<VapidKeys>;
}

interface PushSubscriptionsVars {
	db: Record<"notification_push_subscriptions" | "notification_keys", Collection>;
	vapidKeys: VapidKeys | null;
	pushHosts: PushHost[];
}

function publicSubscription(s: Entity) {
	return { id: s.id, endpoint: s.endpoint, expirationTime: s.expirationTime ?? null, createdAt: s.createdAt, updatedAt: s.updatedAt };
}

export const pushSubscriptionsSchema: Partial<ServiceSchema<Record<string, never>, PushSubscriptionsMethods, PushSubscriptionsVars>> = {
	actions: {
		pushPublicKey: {
			rest: "GET /push/public-key",
			openapi: { response: "PushPublicKey", responses: { 503: "The notifications service is starting" } },
			params: {},
			handler() {
				// Set in `started`; until then a caller is told to come back, not given no key.
				if (!this.vapidKeys) throw new ServiceUnavailableError("The push key is not loaded yet; try again");
				return { publicKey: this.vapidKeys.publicKey };
			},
		},

		subscribePush: {
			rest: "POST /me/push-subscriptions",
			openapi: { success: 201, response: "PushSubscription", responses: { 200: "The browser was subscribed already: its subscription, updated" } },
			auth: "required",
			params: {
				$$strict: "remove",
				endpoint: { type: "string", trim: true, min: 1, max: 2_000 },
				keys: { type: "object", strict: "remove", props: { p256dh: { type: "string", trim: true, min: 1, max: 200 }, auth: { type: "string", trim: true, min: 1, max: 100 } } },
				expirationTime: { type: "number", integer: true, positive: true, optional: true, nullable: true },
			},
			async handler(ctx: Ctx<SubscribeParams>) {
				const userId = me(ctx).id;
				const { keys } = ctx.params;
				const checked = canonicalPushEndpoint(ctx.params.endpoint, this.pushHosts);
				if ("problem" in checked) throw invalidField("endpoint", `endpoint ${checked.problem}`);
				const { endpoint } = checked;
				const keysProblem = pushKeysProblem(keys);
				if (keysProblem) throw invalidField(`keys.${keysProblem.field}`, `keys.${keysProblem.field} ${keysProblem.message}`);
				if (ctx.params.expirationTime != null && ctx.params.expirationTime <= Date.now()) throw invalidField("expirationTime", "expirationTime has passed: the browser renews its subscription, subscribe with the new one");
				const fields = { userId, p256dh: keys.p256dh, auth: keys.auth, expirationTime: ctx.params.expirationTime ?? null, updatedAt: new Date() };
				// The same browser again (renewed keys, or another account signed in on it): one subscription, now this account's.
				const { saved, created } = await keepOwnedDevice(this.db.notification_push_subscriptions, { endpoint }, fields, MAX_PUSH_SUBSCRIPTIONS);
				if (created) {
					ctx.meta.$statusCode = 201;
					// The list, as for the wishlist: a subscription has no page of its own (only its DELETE).
					ctx.meta.$location = "/api/me/push-subscriptions";
				}
				return publicSubscription(saved);
			},
		},

		pushSubscriptions: {
			rest: "GET /me/push-subscriptions",
			openapi: { response: { list: "PushSubscription" } },
			auth: "required",
			params: { $$strict: "remove", ...pageParams },
			handler(ctx: Ctx<{ page?: number; pageSize?: number }>) {
				return pageOfOwnedDevices(this.db.notification_push_subscriptions, me(ctx).id, ctx.params.page, ctx.params.pageSize, publicSubscription);
			},
		},

		unsubscribePush: {
			rest: "DELETE /me/push-subscriptions/:id",
			openapi: { success: 204 },
			auth: "required",
			params: { id: { type: "string", min: 1, max: 100 } },
			async handler(ctx: Ctx<{ id: string }>) {
				await removeOwnedDevice(this.db.notification_push_subscriptions, ctx.params.id, me(ctx).id, "Push subscription");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},
	},

	methods: {
		pushSubscriptionsOf(userId: string) {
			// One past the expirationTime its browser gave is no longer taken by the push service.
			return this.db.notification_push_subscriptions.find({ userId, ...absentOr("expirationTime", { $gt: Date.now() }) }, { sort: { updatedAt: -1 }, limit: MAX_PUSH_SUBSCRIPTIONS });
		},

		async loadVapidKeys(fromEnv: VapidKeys | null) {
			if (fromEnv) return fromEnv;
			const kept = await this.db.notification_keys.findById("vapid");
			if (kept) return { publicKey: kept.publicKey, privateKey: kept.privateKey };
			const made = generateVAPIDKeys();
			try {
				await this.db.notification_keys.insert({ id: "vapid", ...made, createdAt: new Date() });
				this.logger.info("Made the Web Push (VAPID) key pair and kept it in the store; set VAPID_PUBLIC_KEY and VAPID_PRIVATE_KEY to choose your own.");
				return made;
			} catch (err) {
				// Another node on the shared store made its pair first: everyone signs with that one.
				if (!isDuplicate(err)) throw err;
				const winner = await this.db.notification_keys.findById("vapid");
				if (!winner) throw err;
				return { publicKey: winner.publicKey, privateKey: winner.privateKey };
			}
		},
	},
};
