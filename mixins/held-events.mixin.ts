/**
 * Events that are only counted (product views and cart additions, for analytics) have no outbox:
 * they are many, and a disk write each would cost more than they are worth. The broker drops an
 * event no node listens for, so while no analytics node is reachable (a consumers node restarting)
 * they were lost. They are held here instead, in memory, up to MAX_HELD_EVENTS per service (the
 * oldest go first beyond that), stamped with when they happened, and emitted once a listener is
 * back: when the registry's services change, and every few seconds while any are held. Lost only if
 * this process dies too while holding them.
 */
import type { Context, ServiceSchema } from "moleculer";

export const MAX_HELD_EVENTS = 10_000;
const RETRY_MS = 2_000;

interface HeldEvent {
	event: string;
	payload: Record<string, unknown>;
}

export interface HeldEventsMethods {
	/** Emits a counted-only event now if a node listens for it, else holds it until one does. Never rejects. */
	emitCounted(ctx: Context | null, event: string, payload: Record<string, unknown>): Promise<void>;
	releaseHeldEvents(): Promise<void>;
}

interface HeldEventsVars {
	heldEvents: HeldEvent[];
	heldDropped: number;
	heldTimer: NodeJS.Timeout | null;
}

export const HeldEventsMixin: Partial<ServiceSchema<Record<string, never>, HeldEventsMethods, HeldEventsVars>> = {
	events: {
		// A node with listeners joined (or left): what was held may go now.
		"$services.changed"() {
			if (this.heldEvents.length) void this.releaseHeldEvents();
		},
	},

	methods: {
		async emitCounted(ctx: Context | null, event: string, payload: Record<string, unknown>) {
			// Behind held ones, a new event waits its turn, so they arrive in order.
			if (!this.heldEvents.length && this.broker.hasEventListener(event)) {
				// Never a rejection: a count missed must not fail (or, unawaited, crash) what the customer did.
				try {
					await (ctx ? ctx.emit(event, payload) : this.broker.emit(event, payload));
				} catch (err) {
					this.logger.warn(`Emitting ${event} failed: ${(err as Error).message}`);
				}
				return;
			}
			this.heldEvents.push({ event, payload: { occurredAt: new Date().toISOString(), ...payload } });
			if (this.heldEvents.length > MAX_HELD_EVENTS) {
				this.heldEvents.shift();
				if (this.heldDropped++ === 0) this.logger.warn(`More than ${MAX_HELD_EVENTS} events held for want of a listener (no analytics node?): the oldest are dropped.`);
			}
			if (!this.heldTimer) {
				this.heldTimer = setInterval(() => void this.releaseHeldEvents(), RETRY_MS);
				this.heldTimer.unref();
			}
		},

		async releaseHeldEvents() {
			while (this.heldEvents.length && this.broker.hasEventListener(this.heldEvents[0].event)) {
				const { event, payload } = this.heldEvents.shift()!;
				try {
					await this.broker.emit(event, payload);
				} catch (err) {
					this.logger.warn(`Emitting a held ${event} failed: ${(err as Error).message}`);
				}
			}
			if (!this.heldEvents.length && this.heldTimer) {
				clearInterval(this.heldTimer);
				this.heldTimer = null;
				if (this.heldDropped) this.logger.warn(`${this.heldDropped} held event(s) were dropped while no listener was reachable.`);
				this.heldDropped = 0;
			}
		},
	},

	created() {
		this.heldEvents = [];
		this.heldDropped = 0;
		this.heldTimer = null;
	},

	stopped() {
		if (this.heldTimer) clearInterval(this.heldTimer);
		this.heldTimer = null;
	},
};
