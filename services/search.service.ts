/** Full-text product search with facets and autocomplete. */
import type { ServiceSchema } from "moleculer";
import { HealthMixin } from "../mixins/health.mixin";

const SearchService: ServiceSchema = {
	name: "search",
	mixins: [HealthMixin],
	settings: { rest: "/" },
	actions: {},
};

export default SearchService;
