/**
 * Shares of the queue. Users take turns for the next job, each as many in a
 * row as their weight; a project's weight does the same among its owner's
 * projects at one priority (see ready-queue.ts). Super users set them; the
 * setting is a journaled event, so it lasts and replays like any other.
 */
import { z } from 'zod';
import { planSetWeight } from '../../core/commands.js';
import { MAX_WEIGHT } from '../../core/types.js';
import { fail } from '../../core/errors.js';
import type { WeightView, WeightsView } from '../../core/wire.js';
import type { Context } from '../start/context.js';
import type { Router } from '../http/router.js';
import { projectParams, userParams } from '../http/schemas.js';

const weightSchema = z.strictObject({ weight: z.int().min(1).max(MAX_WEIGHT) });

export function weightRoutes(router: Router, ctx: Context): void {
  const model = () => ctx.store.model;

  const set = async (of: WeightView['of'], name: string, weight: number, by: string): Promise<WeightView> => {
    const event = planSetWeight(model(), of, name, weight, Date.now());
    if (model().weightOf(of, name) !== weight) await ctx.store.commit(event);
    ctx.log.info('weight set', { of, name, weight, by });
    return { of, name, weight };
  };

  router.add(
    'PUT',
    '/users/:name/weight',
    { auth: 'superuser', summary: "set a user's share of the queue against other users (1 to 1000, default 1)", params: userParams, body: weightSchema },
    async (req): Promise<WeightView> => {
      const name = req.params.name;
      if (!ctx.accounts.user(name)) throw fail('USER_NOT_FOUND', `no user named '${name}'`);
      return set('user', name, req.body.weight, req.who.user);
    },
  );

  router.add(
    'PUT',
    '/projects/:project/weight',
    { auth: 'superuser', summary: "set a project's share among its owner's projects at the same priority (1 to 1000, default 1)", params: projectParams, body: weightSchema },
    async (req): Promise<WeightView> => set('project', req.params.project, req.body.weight, req.who.user),
  );

  router.add('GET', '/weights', { auth: 'superuser', summary: 'the weights set to other than 1' }, (): WeightsView => {
    const { users, projects } = model().weights();
    return {
      weights: [
        ...users.map(([name, weight]): WeightView => ({ of: 'user', name, weight })),
        ...projects.map(([name, weight]): WeightView => ({ of: 'project', name, weight })),
      ],
    };
  });
}
