/**
 * Code-based routes (no codegen plugin). Every page is its own chunk (`lazyRouteComponent`);
 * the signed-in pages sit under one layout route whose guard waits for the start-up session
 * refresh and sends everyone else to /signin with the page they wanted.
 */
import {
  Outlet,
  createRootRoute,
  createRoute,
  createRouter,
  lazyRouteComponent,
  redirect,
} from '@tanstack/react-router';
import { boot, getSession } from './auth/session';
import { NotFound } from './pages/NotFound';

const rootRoute = createRootRoute({
  component: Outlet,
  notFoundComponent: NotFound,
});

const signInRoute = createRoute({
  getParentRoute: () => rootRoute,
  path: '/signin',
  validateSearch: (s: Record<string, unknown>): { redirect?: string } =>
    typeof s.redirect === 'string' && s.redirect.startsWith('/') ? { redirect: s.redirect } : {},
  component: lazyRouteComponent(() => import('./pages/SignIn'), 'SignInPage'),
});

const authedRoute = createRoute({
  getParentRoute: () => rootRoute,
  id: 'authed',
  beforeLoad: async ({ location }) => {
    await boot();
    if (getSession().status !== 'signedIn') {
      throw redirect({ to: '/signin', search: { redirect: location.href } });
    }
  },
  component: lazyRouteComponent(() => import('./layout/AppShell'), 'AppShell'),
});

const overviewRoute = createRoute({
  getParentRoute: () => authedRoute,
  path: '/',
  component: lazyRouteComponent(() => import('./pages/Overview'), 'OverviewPage'),
});

const serviceRoute = createRoute({
  getParentRoute: () => authedRoute,
  path: '/services/$service',
  component: lazyRouteComponent(() => import('./pages/ServicePage'), 'ServicePage'),
});

const usageRoute = createRoute({
  getParentRoute: () => authedRoute,
  path: '/usage',
  component: lazyRouteComponent(() => import('./pages/Usage'), 'UsagePage'),
});

const keysRoute = createRoute({
  getParentRoute: () => authedRoute,
  path: '/keys',
  component: lazyRouteComponent(() => import('./pages/Keys'), 'KeysPage'),
});

const billingRoute = createRoute({
  getParentRoute: () => authedRoute,
  path: '/billing',
  component: lazyRouteComponent(() => import('./pages/Billing'), 'BillingPage'),
});

const routeTree = rootRoute.addChildren([
  signInRoute,
  authedRoute.addChildren([overviewRoute, usageRoute, serviceRoute, keysRoute, billingRoute]),
]);

export const router = createRouter({
  routeTree,
  basepath: '/app',
  defaultPreload: 'intent',
  defaultPendingMs: 300,
  scrollRestoration: true,
});

declare module '@tanstack/react-router' {
  interface Register {
    router: typeof router;
  }
}
