/** Stand-ins shared by the integration suites that test one service without its neighbours. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../../mixins/health.mixin";

/** The users service as the gateway needs it: every session is active. */
export const FakeUsers: ServiceSchema = {
	name: "users",
	mixins: [HealthMixin],
	actions: { checkSession: { params: { sid: "string" }, handler: () => ({ active: true }) } },
};
