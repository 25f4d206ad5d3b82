/**
 * Which failed calls the broker sends again (its retryPolicy.check). A timeout is sent again only to an
 * action that may run twice at once: the first run may still be going (in this very process when it is
 * local). A registration or a password change sent again ran four times; a search whose node was
 * killed is still better answered by another node than with a 503.
 *
 * What may run twice: an action served at GET routes only; an internal action (no route: the services'
 * calls to each other, written to be sent again: a reservation, a release or a charge is keyed by its
 * order); and any action that says so (`repeatable: true`, or `false` for one that may not). A write at
 * a route, which a customer's request runs, is sent once. Read from the action's definition as the
 * registry knows it, which for a remote action is what its node announced.
 */
import type { Middleware, ServiceBroker } from "moleculer";
import { mayRetry } from "../lib/errors";
import { transporterOutages } from "./transporter-outages";

interface ActionDefinition {
	rest?: unknown;
	repeatable?: unknown;
}

/** Whether running the action again while a first run may still be going does no harm. */
export function isRepeatable(action: ActionDefinition | null | undefined): boolean {
	if (!action) return false;
	if (typeof action.repeatable === "boolean") return action.repeatable;
	if (action.rest === undefined || action.rest === null) return true;
	const routes = Array.isArray(action.rest) ? action.rest : [action.rest];
	return routes.length > 0 && routes.every((r) => (typeof r === "string" ? /^(GET|HEAD)\s/i.test(r) : !!r && typeof r === "object" && /^(GET|HEAD)$/i.test(String((r as { method?: unknown }).method))));
}

/** The broker's retry check and the middleware that lets it see the registry. */
export function retryPolicyCheck(): { check: (err: unknown) => boolean; middleware: Middleware } {
	let broker: ServiceBroker | null = null;
	const repeatable = (name: string) => {
		const endpoints = (broker?.registry as unknown as { getActionEndpoints(n: string): { endpoints?: Array<{ action?: ActionDefinition }> } | null } | undefined)?.getActionEndpoints(name);
		return isRepeatable(endpoints?.endpoints?.[0]?.action);
	};
	// Cut off from the transporter (as the readiness probe sees it: NATS's reconnecting client still reads
	// "connected"): a call sent again waits its whole timeout once more (a read held its client 30 s
	// through three retries in a NATS outage, though the node knew it was cut off).
	const cutOff = () => !!broker && transporterOutages(broker).length > 0;
	return {
		check: (err) => !cutOff() && mayRetry(err, repeatable),
		middleware: {
			name: "RetryPolicy",
			created(b: ServiceBroker) {
				broker = b;
			},
		} as Middleware,
	};
}
