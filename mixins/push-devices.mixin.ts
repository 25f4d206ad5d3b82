/**
 * The shop's apps on customers' phones (Android, or iOS through the Firebase SDK), split out of
 * services/notifications.service.ts for size; only that service uses it. An app registers the FCM
 * token it got from Firebase, and order news then goes to that device as it goes to a subscribed
 * browser (mixins/push-subscriptions.mixin.ts), through FCM when FCM_SERVICE_ACCOUNT is set.
 *
 * A token belongs to one installation of the app, so a device is unique by token: registering it
 * again updates it, and another account signing in on that phone takes it over. An account keeps
 * its newest MAX_PUSH_DEVICES. The host declares the collection in its DbMixin.
 */
import type { Context, ServiceSchema } from "moleculer";
import type { Collection, Entity } from "./collection";
import { me, type ShopMeta } from "./types";
import { pageParams } from "../lib/pagination";
import { keepOwnedDevice, pageOfOwnedDevices, removeOwnedDevice } from "./owned-devices";
import { FCM_TOKEN_MAX, FCM_TOKEN_PATTERN } from "../lib/fcm";

/** Phones and tablets one account keeps registered: a person's devices, and a bound on what one account stores. */
export const MAX_PUSH_DEVICES = 20;
export const DEVICE_PLATFORMS = ["android", "ios"] as const;

type Ctx<P = Record<string, any>> = Context<P, ShopMeta>;

export interface PushDevicesMethods {
	/** The account's devices a message goes to, newest first. */
	pushDevicesOf(userId: string): Promise<Entity[]>;
}

interface PushDevicesVars {
	db: Record<"notification_push_devices", Collection>;
}

function publicDevice(d: Entity) {
	return { id: d.id, token: d.token, platform: d.platform ?? null, createdAt: d.createdAt, updatedAt: d.updatedAt };
}

export const pushDevicesSchema: Partial<ServiceSchema<Record<string, never>, PushDevicesMethods, PushDevicesVars>> = {
	actions: {
		registerPushDevice: {
			rest: "POST /me/push-devices",
			openapi: { success: 201, response: "PushDevice", responses: { 200: "The device was registered already: its registration, updated" } },
			auth: "required",
			params: {
				$$strict: "remove",
				token: { type: "string", trim: true, min: 1, max: FCM_TOKEN_MAX, pattern: FCM_TOKEN_PATTERN, messages: { stringPattern: "The 'token' field must be an FCM registration token (letters, digits, '_', '-' and ':')." } },
				platform: { type: "enum", values: [...DEVICE_PLATFORMS], optional: true },
			},
			async handler(ctx: Ctx<{ token: string; platform?: (typeof DEVICE_PLATFORMS)[number] }>) {
				const userId = me(ctx).id;
				const { token } = ctx.params;
				// The same installation again (the app's start, or another account signed in on it): one device, now this account's.
				// Without a platform, the one registered before stays.
				const { saved, created } = await keepOwnedDevice(this.db.notification_push_devices, { token }, { userId, ...(ctx.params.platform ? { platform: ctx.params.platform } : {}), updatedAt: new Date() }, MAX_PUSH_DEVICES);
				if (created) {
					ctx.meta.$statusCode = 201;
					// The list, as for the wishlist: a device has no page of its own (only its DELETE).
					ctx.meta.$location = "/api/me/push-devices";
				}
				return publicDevice(saved);
			},
		},

		pushDevices: {
			rest: "GET /me/push-devices",
			openapi: { response: { list: "PushDevice" } },
			auth: "required",
			params: { $$strict: "remove", ...pageParams },
			handler(ctx: Ctx<{ page?: number; pageSize?: number }>) {
				return pageOfOwnedDevices(this.db.notification_push_devices, me(ctx).id, ctx.params.page, ctx.params.pageSize, publicDevice);
			},
		},

		removePushDevice: {
			rest: "DELETE /me/push-devices/:id",
			openapi: { success: 204 },
			auth: "required",
			params: { id: { type: "string", min: 1, max: 100 } },
			async handler(ctx: Ctx<{ id: string }>) {
				await removeOwnedDevice(this.db.notification_push_devices, ctx.params.id, me(ctx).id, "Push device");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},
	},

	methods: {
		pushDevicesOf(userId: string) {
			return this.db.notification_push_devices.find({ userId }, { sort: { updatedAt: -1 }, limit: MAX_PUSH_DEVICES });
		},
	},
};
