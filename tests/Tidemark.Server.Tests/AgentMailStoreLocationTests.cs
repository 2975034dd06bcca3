using Tidemark.Agent;

namespace Tidemark.Server.Tests;

/// <summary>
/// What an agent's status says about its mail stores (the web console offers mail recovery for the
/// volumes named there, and passes the root inside the volume to the recovery): the store's path is
/// taken relative to the declared mount that holds it, the deepest one when mounts nest.
/// </summary>
public sealed class AgentMailStoreLocationTests
{
    [Fact]
    public void MailStoreLocations_RootInsideDeclaredMounts_RelativeToTheDeepestMount()
    {
        var config = new AgentConfig
        {
            Mounts = [new AgentMountEntry("/srv", "data"), new AgentMountEntry("/srv/mail/", "mail")],
            Mail =
            [
                new AgentMailEntry("whole", "/srv/mail"),
                new AgentMailEntry("nested", "/srv/mail/vhosts/example.org/", Format: "mdbox"),
                new AgentMailEntry("beside", "/srv/mailboxes"),
                new AgentMailEntry("elsewhere", "/var/mail"),
            ],
        };

        var stores = config.MailStoreLocations();

        Assert.Equal(
            [("whole", "mail", "/", "maildir"), ("nested", "mail", "/vhosts/example.org", "mdbox"), ("beside", "data", "/mailboxes", "maildir"), ("elsewhere", null, "/var/mail", "maildir")],
            stores.Select(s => (s.Name, s.Volume, s.MailRoot, s.Format)));
    }
}
