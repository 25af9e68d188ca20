import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import type { PilotsView } from '../../core/wire.js';

export function pilotRoutes(router: Router, ctx: Context): void {
  router.add(
    'GET',
    '/pilots',
    { auth: 'superuser', summary: 'the launchers and the pilots submitted to batch systems, newest first' },
    (): PilotsView => ctx.pilots?.view() ?? { launchers: [], pilots: [] },
  );
}
