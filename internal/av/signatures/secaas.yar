// YARA rules clamd loads beside the .ndb/.hdb signatures.
rule Secaas_Test_Dropper
{
    meta:
        description = "secaas test: a shell dropper that fetches and runs a payload"
    strings:
        $fetch = "wget -q -O /tmp/.x http://" ascii
        $run = "chmod +x /tmp/.x && /tmp/.x" ascii
    condition:
        $fetch and $run
}
