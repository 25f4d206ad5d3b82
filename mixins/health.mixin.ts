/** Every service answers `<name>.health` (used by the REPL `shop` command and probes). */
import type { ServiceSchema, Service } from "moleculer";

export const HealthMixin: Partial<ServiceSchema> = {
	actions: {
		health: {
			visibility: "public",
			params: {},
			handler(this: Service) {
				return { service: this.name, nodeID: this.broker.nodeID, status: "ok", uptime: Math.round(process.uptime()) };
			},
		},
	},
};
