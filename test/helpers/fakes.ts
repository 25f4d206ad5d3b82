/** Stand-ins shared by the integration suites that test one service without its neighbours. */
import type { Context, ServiceSchema } from "moleculer";
import { HealthMixin } from "../../mixins/health.mixin";
import { OutboxMixin } from "../../mixins/outbox.mixin";
import { signAccessToken } from "../../lib/jwt";
import { openToken } from "../../lib/sealed-token";
import { withOpenedTokens } from "../../lib/notification-plan";

/** A fake session's id names its user and role, so FakeUsers can answer for it as users does. */
export function fakeSession(sid: string): { active: boolean; userId?: string; role?: string } {
	const m = /^fake\.(customer|admin)\.(.+)$/.exec(sid);
	return m ? { active: true, userId: m[2], role: m[1] } : { active: false };
}

/** An access token on a fake session of this user (the gateway checks the session's user and role). */
export function fakeToken(sub: string, role: "customer" | "admin" = "customer"): string {
	return signAccessToken({ sub, role, sid: `fake.${role}.${sub}` });
}

/** The users service as the gateway and a review need it: the sessions of fakeToken are active, and no account is being erased. */
export const FakeUsers: ServiceSchema = {
	name: "users",
	mixins: [HealthMixin],
	actions: {
		checkSession: { params: { sid: "string" }, handler: (ctx: Context<{ sid: string }>) => fakeSession(ctx.params.sid) },
		checkCanOrder: { params: { userId: "string" }, handler: () => true },
	},
};

/**
 * A producer with the real outbox: `announce` publishes a durable event like orders or payments
 * do, optionally backdated in the outbox (as if emitted then, within the outbox's retention).
 */
export function sourceWithOutbox(name: "orders" | "payments" | "reviews"): ServiceSchema {
	return {
		name,
		mixins: [OutboxMixin(name)],
		actions: {
			announce: {
				params: { event: "string", payload: "object", emittedAt: { type: "date", convert: true, optional: true } },
				async handler(ctx: Context<{ event: string; payload: Record<string, unknown>; emittedAt?: Date }>) {
					const eventId: string = await this.publish(ctx, ctx.params.event, ctx.params.payload);
					if (ctx.params.emittedAt) await this.outbox.updateOne({ "payload.eventId": eventId }, { $set: { createdAt: ctx.params.emittedAt } });
					return eventId;
				},
			},
		},
	};
}

export interface RecordedEvent {
	name: string;
	payload: any;
}

/** A service that records every event matching `patterns` (e.g. "order.*"), in order. */
export function eventRecorder(name: string, patterns: string[]): { schema: ServiceSchema; events: RecordedEvent[] } {
	const events: RecordedEvent[] = [];
	const record = (ctx: Context) => void events.push({ name: ctx.eventName!, payload: ctx.params });
	return { schema: { name, events: Object.fromEntries(patterns.map((p) => [p, record])) }, events };
}

/**
 * What the notifications service receives of the account events (`user.*`), and `lastMail(event, email)`:
 * the last such event to that address, with its one-time tokens opened as notifications opens them.
 */
export function accountMailbox(name = "mailbox"): { schema: ServiceSchema; events: RecordedEvent[]; lastMail: (event: string, email: string) => any } {
	const { schema, events } = eventRecorder(name, ["user.*"]);
	const lastMail = (event: string, email: string) => {
		const payload = [...events].reverse().find((m) => m.name === event && m.payload.email === email)?.payload;
		return payload && withOpenedTokens(payload, openToken);
	};
	return { schema, events, lastMail };
}
