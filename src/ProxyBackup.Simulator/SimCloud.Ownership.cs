using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>
/// Owners and groups (docs/opennebula.md, "Ownership"): an object belongs to the user who made it and
/// that user's group; chown gives it to another user and group (-1 keeps one), for callers in the
/// oneadmin group only: the simulator's reading of oned's rule that a new owner needs ADMIN rights.
/// </summary>
public sealed partial class SimCloud
{
    private int GidOf(int uid) => _s.Users.FirstOrDefault(u => u.Id == uid)?.Gid ?? 0;

    public int Chown(OneObject kind, int id, int uid, int gid, SimUser caller)
    {
        lock (_gate)
        {
            var (label, owned) = kind switch
            {
                OneObject.Vm => ("VM", Owned(VmOrThrow(id))),
                OneObject.Image => ("IMAGE", Owned(ImageOrThrow(id))),
                _ => ("TEMPLATE", Owned(TemplateOrThrow(id))),
            };
            if (caller.Gid != 0)
                throw new SimFailure(OneErrorCode.Authorization, $"User [{caller.Id}] : Not authorized to perform ADMIN {label} [{id}].", id);
            if (uid >= 0 && _s.Users.All(u => u.Id != uid)) throw new SimFailure(OneErrorCode.NoExists, $"Error getting user [{uid}].", id);
            if (gid > 1) throw new SimFailure(OneErrorCode.NoExists, $"Error getting group [{gid}].", id);
            owned(uid, gid);
            Save();
            return id;
        }
    }

    private static Action<int, int> Owned(SimVm vm) => (uid, gid) => { if (uid >= 0) vm.Uid = uid; if (gid >= 0) vm.Gid = gid; };
    private static Action<int, int> Owned(SimImage image) => (uid, gid) => { if (uid >= 0) image.Uid = uid; if (gid >= 0) image.Gid = gid; };
    private static Action<int, int> Owned(SimVmTemplate template) => (uid, gid) => { if (uid >= 0) template.Uid = uid; if (gid >= 0) template.Gid = gid; };
}
