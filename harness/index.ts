/**
 * harness: throwaway services and clusters for tests, the benchmark and the soak run, built on
 * infra/: one real server of each kind per test file (test-services.ts), a whole ferry cluster
 * (test-cluster.ts), the sweep of what a crashed run left behind (test-sweep.ts), and the runner
 * behind `npm test` (run-tests.ts). Nothing in production code imports it.
 */
export type { TestCluster, TestClusterOptions } from './test-cluster';
export { startTestCluster, TEST_CLUSTER_BUCKET } from './test-cluster';
export type { TestNats, TestNatsOptions, TestSeaweed, TestTemporal } from './test-services';
export {
  makeTestStateDir,
  pickFreeSeaweedPorts,
  startTestNats,
  startTestSeaweed,
  startTestTemporal,
  timeSkippingEnvironmentOptions,
  timeSkippingServerPath,
} from './test-services';
export { sweepTestServices, TEST_OWNER_FILE, TEST_STATE_PREFIX } from './test-sweep';
