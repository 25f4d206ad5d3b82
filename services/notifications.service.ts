/**
 * Email, SMS and push notifications from durable broker events (verification, password reset, order
 * confirmed/shipped/delivered/cancelled, refund; not the refund of a cancellation, which the
 * cancel message states: see kindFor in lib/notification-plan.ts). Order messages link to the
 * order under STOREFRONT_URL. Order news also goes to each browser the customer subscribed for push
 * (mixins/push-subscriptions.mixin.ts, Web Push) and each phone with the shop's app
 * (mixins/push-devices.mixin.ts, FCM), with the email's subject as title and the SMS text as body.
 *
 * Nothing lost: the users, orders and payments services keep their events in an outbox; the
 * outbox consumer mixin hands live events and those caught up from each outbox (at start, every
 * 30 s, soon after each live event) to `handleEvent`, so events emitted while this service was down
 * are handled when it is back.
 * Nothing twice: every message has a unique `dedupeKey` (event id + template + channel + recipient)
 * and is inserted before it is sent, so a redelivered or replayed event, or a second instance,
 * finds the key taken and sends nothing. Worker pools send queued messages, one per channel and one
 * for account mail (a hung SMS provider holds up no email), each message claimed with a lease;
 * failures retry with exponential backoff (and at least a provider's Retry-After) and end `failed`
 * once NOTIFY_RETRY_MINUTES have passed since the first attempt (or after NOTIFY_MAX_ATTEMPTS, if set).
 * A message with a one-time link (verification, password reset) keeps it only while it may still
 * be sent: the update that records it sent, outboxed or failed also removes the link from the
 * stored body, and the start removes it from messages stored before that.
 */
import fs from "node:fs";
import path from "node:path";
import type { Context, ServiceSchema } from "moleculer";
import type {} from "moleculer-web";
import { DbMixin, type Collections } from "../mixins/db.mixin";
import { OutboxConsumerMixin, type OutboxConsumerSettings, type OutboxConsumerThis } from "../mixins/outbox-consumer.mixin";
import { HealthMixin } from "../mixins/health.mixin";
import { pushSubscriptionsSchema, type PushSubscriptionsMethods } from "../mixins/push-subscriptions.mixin";
import { pushDevicesSchema, type PushDevicesMethods } from "../mixins/push-devices.mixin";
import type { ShopMeta } from "../mixins/types";
import "../mixins/types";
import { ConflictError, NotFoundError, UnauthorizedError, isDuplicate } from "../lib/errors";
import { pageParams, pageWindow, toPage } from "../lib/pagination";
import { WorkQueue } from "../lib/work-queue";
import { DEFAULT_BACKOFF, nextRetry, type BackoffOptions } from "../lib/retry-backoff";
import { parseTemplate, renderTemplate } from "../lib/template-render";
import { openToken } from "../lib/sealed-token";
import { MIN_RETENTION_DAYS } from "../lib/config";
import {
	NOTIFICATION_KINDS,
	ONE_TIME_LINK_KINDS,
	SOURCE_EVENTS,
	dedupeKey,
	deviceIdOf,
	eventIdOf,
	isAccountMail,
	kindFor,
	needsUserLookup,
	plannedMessages,
	templateVars,
	withOpenedTokens,
	withoutOneTimeLinks,
	type Contact,
	type Medium,
	type NotificationKind,
} from "../lib/notification-plan";
import { DeliveryError, SubscriptionGoneError, createChannels, readNotificationConfig, type DeliveryResult, type NotificationChannel, type NotificationConfig, type OutgoingMessage } from "../adapters/channels";
import { WebPushChannel, type VapidKeys } from "../adapters/channels/web-push-channel";
import type { PushHost } from "../lib/web-push";
import { defineMetric } from "../mixins/define-metric";

const TEMPLATES_DIR = path.join(__dirname, "../templates/notifications");
const STATUSES = ["queued", "sent", "failed", "outboxed"] as const;
/** Nothing more will be sent of a message in these: a one-time link in its body has no more use. */
const FINAL_STATUSES = ["sent", "outboxed", "failed"];
const EPOCH = new Date(0);
const DAY_MS = 24 * 3600 * 1000;

type Parsed = ReturnType<typeof parseTemplate>;
interface KindTemplates {
	subject: Parsed;
	html: Parsed;
	text: Parsed;
	sms: Parsed | null;
}

/** Reads every kind's templates once; a missing or unbalanced file stops the service at start, not at send. */
function loadTemplates(dir: string): Map<NotificationKind, KindTemplates> {
	const read = (file: string) => {
		const full = path.join(dir, file);
		return fs.existsSync(full) ? parseTemplate(fs.readFileSync(full, "utf8")) : null;
	};
	const required = (file: string) => read(file) ?? (() => { throw new Error(`Missing notification template ${path.join(dir, file)}`); })();
	return new Map(NOTIFICATION_KINDS.map((kind) => [kind, { subject: required(`${kind}.subject.txt`), html: required(`${kind}.html`), text: required(`${kind}.txt`), sms: read(`${kind}.sms.txt`) }]));
}

interface Message {
	id: string;
	userId: string | null;
	eventId: string;
	dedupeKey: string;
	template: NotificationKind;
	channel: Medium;
	provider: string | null;
	recipient: string;
	subject: string | null;
	html: string | null;
	text: string;
	status: (typeof STATUSES)[number];
	attempts: number;
	providerId: string | null;
	error: string | null;
	createdAt: Date;
	sentAt: Date | null;
	failedAt: Date | null;
	nextAttemptAt: Date;
	/** While in the future, one worker owns the message; a crashed worker's lease simply runs out. */
	leaseUntil: Date;
	/** When the one-time link left the stored body (verification and reset messages, once final). */
	linkRemovedAt?: Date;
	/** Push: the page a click opens. */
	url?: string | null;
	/** When the current run of attempts began, if not at createdAt (an admin's retry): NOTIFY_RETRY_MINUTES counts from it. */
	triesSince?: Date;
	/** The last attempt got no answer (a timeout): the provider may have taken it, so the next one waits longer for its answer. */
	unanswered?: boolean;
	/** When a finished message is removed (NOTIFICATION_RETENTION_DAYS after it finished); absent: kept for good. */
	purgeAt?: Date;
}

/** The fields that take the one-time link out of a message that will not be sent again; none for other kinds. */
function spentLink(m: Message): Partial<Message> {
	const body = withoutOneTimeLinks(m.template, { html: m.html, text: m.text });
	return body ? { ...body, linkRemovedAt: new Date() } : {};
}

/** What a customer sees of their messages: no bodies, as they may carry one-time tokens. */
function customerView(m: Message) {
	return { id: m.id, channel: m.channel, template: m.template, recipient: m.recipient, subject: m.subject, status: m.status, attempts: m.attempts, createdAt: m.createdAt, sentAt: m.sentAt };
}

function adminView(m: Message) {
	return {
		...customerView(m), userId: m.userId, eventId: m.eventId, provider: m.provider, providerId: m.providerId, error: m.error, nextAttemptAt: m.nextAttemptAt, failedAt: m.failedAt,
		linkRemovedAt: m.linkRemovedAt ?? null,
	};
}

/** A message for a worker pool; one stored already claimed carries itself (see handleEvent). */
interface QueuedMessage {
	id: string;
	claimed?: Message;
}

/**
 * The worker pools, NOTIFY_CONCURRENCY workers each: one per channel, so that a slow or hung
 * provider holds up only its own messages, and account mail (a reset link a customer waits for) its
 * own, not queued behind a backlog of order news.
 */
const LANES = ["account", "email", "sms", "push", "app"] as const;
type Lane = (typeof LANES)[number];

function laneOf(m: Pick<Message, "template" | "channel" | "recipient">): Lane {
	if (m.channel === "push") return deviceIdOf(m.recipient) ? "app" : "push";
	return m.channel === "email" && isAccountMail(m.template) ? "account" : m.channel;
}

interface NotifySettings extends OutboxConsumerSettings {
	rest: string;
	/** How often queued messages that are due (retries, leftovers of a restart) are picked up. */
	scanIntervalMs: number;
	leaseMs: number;
	backoff: BackoffOptions;
}

interface NotifyVars {
	db: Collections;
	config: NotificationConfig;
	/** Browser push joins once its keys are loaded (started); `app` is push to the shop's apps (FCM or the outbox). */
	channels: Record<"email" | "sms" | "app", NotificationChannel> & { push?: NotificationChannel };
	vapidKeys: VapidKeys | null;
	pushHosts: PushHost[];
	templates: Map<NotificationKind, KindTemplates>;
	queues: Record<Lane, WorkQueue<QueuedMessage>>;
	timers: Set<NodeJS.Timeout>;
	stopping: boolean;
}

interface NotifyMethods extends Pick<OutboxConsumerThis, "catchUpAll">, PushSubscriptionsMethods, PushDevicesMethods {
	channelFor(medium: Medium, recipient: string): NotificationChannel | undefined;
	handleEvent(event: string, payload: Record<string, any>): Promise<void>;
	removeSpentLinks(): Promise<number>;
	keptUntil(finishedAt: Date): { purgeAt?: Date };
	applyRetention(): Promise<void>;
	contactFor(kind: NotificationKind, payload: Record<string, any>): Promise<Contact | null>;
	forgetMessagesOf(userId: string): Promise<void>;
	storeDelivered(message: Message, channel: NotificationChannel): Promise<void>;
	delivered(m: Message, result: DeliveryResult, sentAt: Date): Partial<Message>;
	deliver(item: QueuedMessage): Promise<void>;
	outgoing(m: Message): Promise<OutgoingMessage>;
	claim(item: QueuedMessage, now: Date): Promise<Message | null>;
	enqueueDue(): Promise<void>;
	enqueue(m: Pick<Message, "id" | "template" | "channel" | "recipient">, claimed?: Message): boolean;
	later(delayMs: number, fn: () => unknown): void;
	countSend(metric: "notification_sends_total" | "notification_send_failures_total", m: Message, provider: string): void;
}

type NotifyThis = NotifyVars & NotifyMethods & { settings: NotifySettings; broker: any; logger: any };

const NotificationsService: ServiceSchema<NotifySettings, NotifyMethods, NotifyVars> = {
	name: "notifications",
	mixins: [
		// Before DbMixin: the catch-up stops before the collections close.
		OutboxConsumerMixin({ cursors: "notification_cursors", sources: SOURCE_EVENTS, handler: "handleEvent" }),
		DbMixin("notifications", {
			// Collection names carry the service's name: with MONGO_URI they share one database.
			notifications: {
				fields: {
					userId: String, eventId: String, dedupeKey: String, template: String, channel: String, provider: String, recipient: String,
					subject: String, html: String, text: String, status: String, attempts: Number, providerId: String, error: String,
					createdAt: Date, sentAt: Date, failedAt: Date, nextAttemptAt: Date, leaseUntil: Date, linkRemovedAt: Date, url: String, purgeAt: Date,
					triesSince: Date, unanswered: Boolean,
				},
				indexes: [
					// `userId` alone: the embedded store reads a compound index only for a query naming all its fields (a customer's list).
					{ fields: { dedupeKey: 1 }, unique: true }, { fields: { userId: 1 } }, { fields: { status: 1, nextAttemptAt: 1 } },
					{ fields: { template: 1, linkRemovedAt: 1 } },
					// The embedded store answers the due scan (every 5 s) from this one: the queued messages, not every message ever sent.
					{ fields: { status: 1 } },
					// NOTIFICATION_RETENTION_DAYS: a finished message goes at its purgeAt; one without (queued, or kept for good) never.
					// Sparse: those without are not in it at all, so keeping messages for good costs no index upkeep.
					{ fields: { purgeAt: 1 }, expireAfterSeconds: 0, sparse: true },
				],
			},
			/**
			 * Events already handled (by id), so a catch-up does not redo them; kept longer than the outboxes keep events
			 * (7 days), and no longer than the shortest NOTIFICATION_RETENTION_DAYS, which is set from it.
			 */
			notification_events: { fields: { event: String, handledAt: Date }, indexes: [{ fields: { handledAt: 1 }, expireAfterSeconds: (MIN_RETENTION_DAYS * DAY_MS) / 1000 }] },
			notification_push_subscriptions: {
				fields: { userId: String, endpoint: String, p256dh: String, auth: String, expirationTime: Number, createdAt: Date, updatedAt: Date },
				indexes: [{ fields: { endpoint: 1 }, unique: true }, { fields: { userId: 1, updatedAt: -1 } }],
			},
			notification_push_devices: {
				fields: { userId: String, token: String, platform: String, createdAt: Date, updatedAt: Date },
				indexes: [{ fields: { token: 1 }, unique: true }, { fields: { userId: 1, updatedAt: -1 } }],
			},
			/** The Web Push key pair made on the first start when VAPID_* are not set (one document, "vapid"). */
			notification_keys: { fields: { publicKey: String, privateKey: String, createdAt: Date } },
		}),
		HealthMixin,
		pushSubscriptionsSchema as Partial<ServiceSchema>,
		pushDevicesSchema as Partial<ServiceSchema>,
	],
	settings: { rest: "/", scanIntervalMs: 5_000, catchUpIntervalMs: 30_000, catchUpDelayMs: 500, leaseMs: 60_000, backoff: DEFAULT_BACKOFF },

	actions: {
		mine: {
			rest: "GET /me/notifications",
			openapi: { response: { list: "Notification" } },
			auth: "required",
			params: { $$strict: "remove", ...pageParams },
			async handler(this: NotifyThis, ctx: Context<{ page?: number; pageSize?: number }, ShopMeta>) {
				if (!ctx.meta.user) throw new UnauthorizedError();
				const w = pageWindow(ctx.params.page, ctx.params.pageSize);
				const query = { userId: ctx.meta.user.id };
				const [rows, total] = await this.db.notifications.findWithCount(query, { sort: { createdAt: -1, channel: 1, id: -1 }, offset: w.offset, limit: w.limit });
				return toPage(rows.map((m) => customerView(m as Message)), total, w.page, w.pageSize);
			},
		},

		list: {
			rest: "GET /notifications",
			openapi: { response: { list: "NotificationAdmin" } },
			roles: ["admin"],
			params: {
				$$strict: "remove",
				status: { type: "enum", values: [...STATUSES], optional: true },
				channel: { type: "enum", values: ["email", "sms", "push"], optional: true },
				template: { type: "enum", values: NOTIFICATION_KINDS, optional: true },
				userId: { type: "string", optional: true, max: 100 },
				...pageParams,
			},
			async handler(this: NotifyThis, ctx: Context<{ status?: string; channel?: string; template?: string; userId?: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, ...filters } = ctx.params;
				const query = Object.fromEntries(Object.entries(filters).filter(([, v]) => v != null));
				const w = pageWindow(page, pageSize);
				const [rows, total] = await this.db.notifications.findWithCount(query, { sort: { createdAt: -1, channel: 1, id: -1 }, offset: w.offset, limit: w.limit });
				return toPage(rows.map((m) => adminView(m as Message)), total, w.page, w.pageSize);
			},
		},

		retry: {
			rest: "POST /notifications/:id/retry",
			openapi: { response: "NotificationAdmin", responses: { 409: "Only failed messages can be retried, and not one whose one-time link was removed" } },
			roles: ["admin"],
			params: { id: { type: "string", min: 1, max: 100 } },
			async handler(this: NotifyThis, ctx: Context<{ id: string }>) {
				const now = new Date();
				// Only a failed message goes back to the queue, with a fresh set of attempts; not one whose
				// one-time link is gone (the customer asks for a new link instead).
				const requeued = await this.db.notifications.updateOne(
					{ id: ctx.params.id, status: "failed", linkRemovedAt: { $exists: false } },
					// A fresh retry window too, from now.
					{ $set: { status: "queued", attempts: 0, nextAttemptAt: now, leaseUntil: EPOCH, failedAt: null, triesSince: now }, $unset: { purgeAt: true } },
				);
				if (!requeued) {
					const existing = await this.db.notifications.findById(ctx.params.id);
					if (!existing) throw new NotFoundError("Notification");
					if (existing.status === "failed") throw new ConflictError("The one-time link of this message was removed when it failed; the customer asks for a new one", "LINK_REMOVED");
					throw new ConflictError(`Only failed messages can be retried; this one is ${existing.status}`, "INVALID_STATE");
				}
				this.enqueue(requeued as Message);
				return adminView(requeued as Message);
			},
		},
	},

	methods: {
		/** Creates the event's messages (once, whatever the number of deliveries) and queues them. */
		async handleEvent(event: string, payload: Record<string, any>) {
			if (!payload || typeof payload !== "object") return;
			const eventId = eventIdOf(event, payload);
			if (await this.db.notification_events.findById(eventId)) return;
			// An erased account (users' durable user.deleted): the messages kept for it go.
			if (event === "user.deleted" && typeof payload.userId === "string") await this.forgetMessagesOf(payload.userId);
			const kind = kindFor(event, payload);
			const contact = kind ? await this.contactFor(kind, payload) : null;
			const opened = withOpenedTokens(payload, openToken);
			// Sealed under another JWT_SECRET (a node set up differently) or altered: no message with a dead link.
			if (kind && contact && !opened) this.logger.error(`Event ${eventId}: its one-time token cannot be opened (is JWT_SECRET the same on every node?); no ${kind} message sent`);
			if (kind && contact && opened) {
				const tpl = this.templates.get(kind)!;
				const vars = templateVars(kind, opened, contact, this.config);
				const now = new Date();
				// Stored claimed by this worker, with its first attempt counted: sending it needs no claim write.
				const leaseUntil = new Date(now.getTime() + this.settings.leaseMs);
				for (const planned of plannedMessages(kind, contact)) {
					// Push shows the SMS text, under the email's subject.
					if (planned.medium !== "email" && !tpl.sms) continue;
					const content =
						planned.medium === "email"
							? { subject: renderTemplate(tpl.subject, vars, "line").trim(), html: renderTemplate(tpl.html, vars, "html"), text: renderTemplate(tpl.text, vars, "text") }
							: planned.medium === "push"
								? { subject: renderTemplate(tpl.subject, vars, "line").trim(), html: null, text: renderTemplate(tpl.sms!, vars, "text").trim(), url: (vars.orderUrl as string) || null }
								: { subject: null, html: null, text: renderTemplate(tpl.sms!, vars, "text").trim() };
					const message = {
						userId: contact.userId, eventId, dedupeKey: dedupeKey(eventId, kind, planned.medium, planned.recipient), template: kind,
						channel: planned.medium, provider: null, recipient: planned.recipient, ...content, status: "queued", attempts: 1,
						providerId: null, error: null, createdAt: now, sentAt: null, failedAt: null, nextAttemptAt: now, leaseUntil,
					};
					const channel = this.channelFor(planned.medium, planned.recipient);
					try {
						if (channel?.deliversByStoring) {
							await this.storeDelivered(message as unknown as Message, channel);
							continue;
						}
						const saved = await this.db.notifications.insert(message);
						// Not queued (stopping, or the pool is full): the lease runs out and the scan takes it.
						this.enqueue(saved as unknown as Message, saved as unknown as Message);
					} catch (err) {
						// Already created by an earlier delivery of this event: nothing twice.
						if (!isDuplicate(err)) throw err;
					}
				}
			}
			try {
				await this.db.notification_events.insert({ id: eventId, event, handledAt: new Date() });
			} catch (err) {
				if (!isDuplicate(err)) throw err;
			}
		},

		/** The messages kept for a user who deleted their account (addresses, names, links), their browsers' push subscriptions and their apps' devices: gone, and not sent. */
		async forgetMessagesOf(userId: string) {
			// A browser's subscription or an app's token identifies a device of theirs. Rewritten even when none is
			// left: the embedded file still holds the lines of one removed before (unsubscribed, or taken over by another account).
			for (const devices of [this.db.notification_push_subscriptions, this.db.notification_push_devices]) {
				await devices.removeMany({ userId });
				await devices.compact();
			}
			const forgotten = await this.db.notifications.removeMany({ userId });
			// Nor may the embedded file keep them until it is next rewritten.
			if (forgotten) await this.db.notifications.compact();
		},

		/**
		 * Who to write to: the event carries it for account mail (the address it is about); otherwise ask
		 * users. An account deleted since gets nothing, account mail included: an email change or reset
		 * asked while it was being erased is not sent, nor kept.
		 */
		async contactFor(kind: NotificationKind, payload: Record<string, any>) {
			if (typeof payload.userId !== "string" || !payload.userId) {
				return needsUserLookup(kind) ? null : { userId: null, email: payload.email ?? null, phone: null, firstName: payload.firstName ?? null };
			}
			let user: Record<string, any>;
			try {
				user = await this.broker.call<Record<string, any>, { id: string }>("users.get", { id: payload.userId });
			} catch (err) {
				if ((err as { code?: number }).code === 404 && (err as { type?: string }).type === "NOT_FOUND") return null;
				throw err;
			}
			if (!needsUserLookup(kind)) return { userId: user.id, email: payload.email ?? null, phone: null, firstName: payload.firstName ?? null };
			const [push, devices] = await Promise.all([this.pushSubscriptionsOf(user.id), this.pushDevicesOf(user.id)]);
			return { userId: user.id, email: user.email ?? null, phone: user.phone ?? null, firstName: user.firstName ?? null, pushSubscriptionIds: push.map((s) => s.id), pushDeviceIds: devices.map((d) => d.id) };
		},

		/**
		 * A message whose channel delivers by storing it (the outbox): stored as its delivery would leave it
		 * (outboxed, its one-time link gone, its retention set), in one write instead of a queued message and
		 * its update; then the channel reports it (development's log shows it whole, link included).
		 */
		async storeDelivered(message: Message, channel: NotificationChannel) {
			const stored = { status: "outboxed", provider: channel.provider, providerId: null } as const;
			const saved = (await this.db.notifications.insert({ ...message, ...this.delivered(message, stored, message.createdAt) })) as unknown as Message;
			try {
				// The message as written, its link included (the stored copy has none).
				await channel.send(await this.outgoing({ ...message, id: saved.id }));
			} catch (err) {
				this.logger.warn(`Notification ${saved.id} is stored in the outbox, but reporting it failed: ${(err as Error).message}`);
			}
		},

		/** Sends one message if it is still queued and due, and nobody else holds it. */
		async deliver(item: QueuedMessage) {
			const { id } = item;
			const claimed = await this.claim(item, new Date());
			if (!claimed) return;
			const channel = this.channelFor(claimed.channel, claimed.recipient);
			// Browser push before its keys are loaded: the lease runs out and the scan takes it again.
			if (!channel) return;
			const mine = { id, leaseUntil: claimed.leaseUntil };
			// The last attempt got no answer, and a slow provider may have taken it: this one waits longer for its
			// answer, up to half the lease (what a claim leaves at least), so that a slow provider gets the message
			// twice at most, not once per attempt (no provider here takes an idempotency key).
			const options = claimed.unanswered ? { timeoutMs: this.settings.leaseMs / 2 } : {};
			let result;
			try {
				result = await channel.send(await this.outgoing(claimed), options);
			} catch (err) {
				// The browser unsubscribed, its subscription expired, or the app was uninstalled: nothing will reach it again.
				if (err instanceof SubscriptionGoneError) {
					const deviceId = deviceIdOf(claimed.recipient);
					if (deviceId) await this.db.notification_push_devices.removeOne({ id: deviceId, userId: claimed.userId });
					else await this.db.notification_push_subscriptions.removeOne({ id: claimed.recipient, userId: claimed.userId });
				}
				const failure = err instanceof DeliveryError ? err : null;
				const decision = nextRetry(
					{ attempts: claimed.attempts, since: claimed.triesSince ?? claimed.createdAt, permanent: !!failure?.permanent, retryAfterMs: failure?.retryAfterMs },
					{ maxAttempts: this.config.maxAttempts, windowMs: this.config.retryWindowMs },
					new Date(),
					this.settings.backoff,
				);
				// On one line: a provider's error text goes into the log and the message's record, and a line break in
				// it started a line the log reader took for the shop's own.
				const error = (err as Error).message.slice(0, 500).replace(/\s*[\r\n]+\s*/g, " ");
				this.countSend("notification_send_failures_total", claimed, channel.provider);
				if (decision.retry) {
					const unanswered = !!failure && failure.status === undefined;
					await this.db.notifications.updateOne(mine, { $set: { provider: channel.provider, error, nextAttemptAt: decision.at, leaseUntil: EPOCH, unanswered } });
					this.later(decision.delayMs, () => this.enqueue(claimed));
				} else {
					this.logger.warn(`Notification ${id} (${claimed.template} by ${claimed.channel}) failed after ${claimed.attempts} attempt(s): ${error}`);
					const failedAt = new Date();
					await this.db.notifications.updateOne(mine, { $set: { status: "failed", provider: channel.provider, error, failedAt, leaseUntil: EPOCH, ...spentLink(claimed), ...this.keptUntil(failedAt) } });
				}
				return;
			}
			// Outside the try: a store error here must not count as a failed send (it was sent).
			this.countSend("notification_sends_total", claimed, result.provider);
			await this.db.notifications.updateOne(mine, { $set: this.delivered(claimed, result, new Date()) });
		},

		/**
		 * Attempts by outcome, channel and provider: with a day of retries a provider outage fails no
		 * message for hours, so these are what tells an operator (the ShopNotificationsFailing alert).
		 */
		countSend(metric: "notification_sends_total" | "notification_send_failures_total", m: Message, provider: string) {
			if (!this.broker.isMetricsEnabled()) return;
			const lane = laneOf(m);
			this.broker.metrics.increment(metric, { channel: lane === "account" ? "email" : lane, provider });
		},

		/** What a delivered message's record says: how it went, its lease let go, its one-time link gone, its retention. */
		delivered(m: Message, result: DeliveryResult, sentAt: Date): Partial<Message> {
			return { status: result.status, provider: result.provider, providerId: result.providerId, sentAt, error: null, leaseUntil: EPOCH, ...spentLink(m), ...this.keptUntil(sentAt) };
		},

		/** Browser push, app push (by its device) and the other media each have their channel. */
		channelFor(medium: Medium, recipient: string) {
			return medium === "push" && deviceIdOf(recipient) ? this.channels.app : this.channels[medium];
		},

		/** The message as its channel takes it; a push message with the subscription or device it goes to, if that is still the customer's. */
		async outgoing(m: Message) {
			const message: OutgoingMessage = { id: m.id, to: m.recipient, subject: m.subject ?? undefined, html: m.html ?? undefined, text: m.text, url: m.url ?? undefined };
			if (m.channel !== "push") return message;
			const deviceId = deviceIdOf(m.recipient);
			if (deviceId) {
				const device = await this.db.notification_push_devices.findById(deviceId);
				// Removed since (signed out), or taken over by another account signed in on that phone.
				if (!device || device.userId !== m.userId) throw new SubscriptionGoneError("The app's device was removed before the message went", this.channels.app.provider, 410);
				return { ...message, device: { token: device.token } };
			}
			const sub = await this.db.notification_push_subscriptions.findById(m.recipient);
			// Unsubscribed since, or taken over by another account signed in on that browser.
			if (!sub || sub.userId !== m.userId) throw new SubscriptionGoneError("The push subscription was removed before the message went", "webpush", 410);
			return { ...message, to: sub.endpoint, push: { endpoint: sub.endpoint, keys: { p256dh: sub.p256dh, auth: sub.auth } } };
		},

		/** Takes the one-time links out of messages that were final before links were removed on delivery. */
		async removeSpentLinks() {
			let removed = 0;
			for (;;) {
				const batch = (await this.db.notifications.find(
					{ template: { $in: [...ONE_TIME_LINK_KINDS] }, linkRemovedAt: { $exists: false }, status: { $in: FINAL_STATUSES } },
					{ limit: 200, fields: ["id", "template", "status", "html", "text"] },
				)) as unknown as Message[];
				let done = 0;
				for (const m of batch) {
					if (await this.db.notifications.updateOne({ id: m.id, status: m.status, linkRemovedAt: { $exists: false } }, { $set: spentLink(m) })) done++;
				}
				removed += done;
				// A short batch was the last; one where nothing changed (a retry took them meanwhile) too.
				if (batch.length < 200 || done === 0) break;
			}
			if (removed) this.logger.info(`Removed the one-time links of ${removed} message(s) stored before links were removed on delivery.`);
			return removed;
		},

		/**
		 * Takes the message for one attempt: the claim made when it was stored while at least half its
		 * lease is left (a send must not outlive it), else a conditional update that renews that claim
		 * if it is still ours, or claims a due message nobody holds and counts the attempt.
		 */
		async claim({ id, claimed }: QueuedMessage, now: Date) {
			const lease = new Date(now.getTime() + this.settings.leaseMs);
			if (claimed) {
				if (claimed.leaseUntil.getTime() - now.getTime() >= this.settings.leaseMs / 2) return claimed;
				return (await this.db.notifications.updateOne({ id, status: "queued", leaseUntil: claimed.leaseUntil }, { $set: { leaseUntil: lease } })) as Message | null;
			}
			return (await this.db.notifications.updateOne(
				{ id, status: "queued", nextAttemptAt: { $lte: now }, leaseUntil: { $lte: now } },
				{ $set: { leaseUntil: lease }, $inc: { attempts: 1 } },
			)) as Message | null;
		},

		/** Queues what is due: retries whose time has come, and what a stopped or crashed process left. */
		async enqueueDue() {
			const now = new Date();
			const due = await this.db.notifications.find(
				{ status: "queued", nextAttemptAt: { $lte: now }, leaseUntil: { $lte: now } },
				{ sort: { nextAttemptAt: 1 }, limit: 500, fields: ["id", "template", "channel", "recipient"] },
			);
			for (const m of due) this.enqueue(m as unknown as Message);
		},

		/** Queues a message in its pool; false when not taken (stopping, full, or already there). */
		enqueue(m: Pick<Message, "id" | "template" | "channel" | "recipient">, claimed?: Message) {
			return this.queues[laneOf(m)].push(claimed ? { id: m.id, claimed } : { id: m.id });
		},

		keptUntil(finishedAt: Date) {
			const days = this.config.retentionDays;
			return days > 0 ? { purgeAt: new Date(finishedAt.getTime() + days * DAY_MS) } : {};
		},

		/**
		 * Brings the stored messages in line with NOTIFICATION_RETENTION_DAYS: with a retention, messages that
		 * finished without one (before it was set) are kept that long from now; without, none is removed any more.
		 * A changed number of days applies to messages finishing from now on.
		 */
		async applyRetention() {
			if (this.config.retentionDays > 0) {
				const n = await this.db.notifications.updateMany({ status: { $in: FINAL_STATUSES }, purgeAt: { $exists: false } }, { $set: this.keptUntil(new Date()) });
				if (n) this.logger.info(`${n} finished message(s) stored before NOTIFICATION_RETENTION_DAYS was set are kept ${this.config.retentionDays} days from now`);
			} else {
				await this.db.notifications.updateMany({ purgeAt: { $gt: EPOCH } }, { $unset: { purgeAt: true } });
			}
		},

		later(delayMs: number, fn: () => unknown) {
			if (this.stopping) return;
			const timer = setTimeout(() => {
				this.timers.delete(timer);
				fn();
			}, delayMs);
			timer.unref();
			this.timers.add(timer);
		},
	},

	created() {
		this.config = readNotificationConfig();
		this.channels = createChannels(this.config, (line) => (this.config.logWholeOutboxed ? this.logger.info(line) : this.logger.debug(line)));
		this.templates = loadTemplates(TEMPLATES_DIR);
		this.vapidKeys = null;
		this.pushHosts = this.config.webPush.hosts;
		this.timers = new Set();
		this.stopping = false;
		const pool = () =>
			new WorkQueue<QueuedMessage>({
				concurrency: this.config.concurrency,
				maxQueued: 10_000,
				worker: (item) => this.deliver(item),
				key: (item) => item.id,
				// A store error while claiming or recording: the message stays queued and the scan takes it again.
				onError: (err, item) => this.logger.error(`Delivering notification ${item.id} failed:`, err),
			});
		this.queues = Object.fromEntries(LANES.map((lane) => [lane, pool()])) as Record<Lane, WorkQueue<QueuedMessage>>;
	},

	async started() {
		this.stopping = false;
		defineMetric(this.broker, { name: "notification_sends_total", type: "counter", labelNames: ["channel", "provider"], description: "Messages a provider took" });
		defineMetric(this.broker, { name: "notification_send_failures_total", type: "counter", labelNames: ["channel", "provider"], description: "Failed attempts to send a message (each retry counts)" });
		this.vapidKeys = await this.loadVapidKeys(this.config.webPush.keys);
		this.channels.push = new WebPushChannel({ ...this.vapidKeys, subject: this.config.webPush.subject });
		await this.removeSpentLinks();
		await this.applyRetention();
		// Work left by the previous run; what the sources kept while we were away comes from the catch-up.
		await this.enqueueDue();
		const scan = setInterval(() => void this.enqueueDue().catch((err) => this.logger.warn(`Scanning due notifications failed: ${err.message}`)), this.settings.scanIntervalMs);
		scan.unref();
		this.timers.add(scan);
	},

	async stopped() {
		this.stopping = true;
		for (const t of this.timers) clearTimeout(t);
		this.timers.clear();
		// Messages being sent finish; waiting ones stay queued in the store for the next start.
		await Promise.all(Object.values(this.queues).map((queue) => queue.stop()));
	},
};

export default NotificationsService;
