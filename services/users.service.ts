/** Accounts: registration, login, sessions, profiles, addresses, wishlist. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const UsersService: ServiceSchema = {
	name: "users",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default UsersService;
